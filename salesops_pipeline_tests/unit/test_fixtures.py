"""The suite is self-contained: the company's real DB and the provider's real webhooks ship
in `fixtures/`, a missing fixture fails at once naming the file, and nothing in the project
reads outside the repository."""

import json
import re
from pathlib import Path

import pytest

from salesops_pipeline_tests.conftest import REPO_ROOT, fixture_path

PROJECT_FILES = (
    "salesops_pipeline",
    "salesops_pipeline_tests",
    "scripts",
    "benchmarks",
    ".ci",
    "README.md",
    "setup.py",
    "pyproject.toml",
    "workspace.yaml",
    ".env.example",
)


def test_a_missing_fixture_fails_at_once_naming_it():
    with pytest.raises(pytest.fail.Exception, match=r"test fixture missing: .*events/nope\.json"):
        fixture_path("events/nope.json")


def test_reference_events_are_the_providers_two_payloads(reference_events):
    assert {name: json.loads(raw)["callId"] for name, raw in reference_events.items()} == {
        "post_call_2.1": "102224021",
        "post_call_2.2": "102344028",
    }


def test_nothing_reads_outside_the_repository():
    # A path climbing out of the checkout: a lone clone has nothing beside it.
    climbing = re.compile(r"\.\./|REPO_ROOT\.parent\b")
    project = [REPO_ROOT / name for name in PROJECT_FILES]
    files = [p for top in project for p in ([top] if top.is_file() else top.rglob("*"))]
    readers = [
        str(path.relative_to(REPO_ROOT))
        for path in files
        if path.is_file()
        and path != Path(__file__)
        and path.suffix in (".py", ".sh", ".md", ".yaml", ".toml", ".example", "")
        and climbing.search(path.read_text(errors="replace"))
    ]
    assert readers == []


def test_every_picture_the_readme_shows_ships_with_it():
    readme = (REPO_ROOT / "README.md").read_text()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert pictures, "the README's tour shows the UI"
    for picture in pictures:
        assert (REPO_ROOT / picture).is_file(), picture
        assert (REPO_ROOT / picture).read_bytes().startswith(b"\x89PNG"), picture
