"""The benchmarks' own smoke run, at a tiny scale, so that they cannot rot. It checks that
every module runs and that the methods compared agree; it asserts no speed."""

import subprocess
import sys

import pytest

from salesops_pipeline_tests.conftest import REPO_ROOT
from salesops_pipeline_tests.support.system_packages import missing_for


# It times nothing, so the test command runs it beside the in-process layers.
@pytest.mark.smoke
def test_every_benchmark_runs_at_smoke_scale(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--scale", "smoke"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for title in (
        "## Duplicates",
        "## Contacts ingestion",
        "## Sales: team_sales",
        "## Sales: agent_daily_progression",
        "## Report runs: sales_reports_job",
        "## Intake",
        "## Post-call latency",
        "## CLI",
        "## Progress: salesops duplicates",
        "## Progress: salesops demo-db",
        "## Inbox on SQLite: hot queries",
        "## Day (smoke, 1 min, no stack): the contract",
        "## Prompt post-call (smoke): post to the provider's write",
        "## Prompt post-call (smoke): without traffic",
    ):
        assert title in out
    # Without PostgreSQL's server programs the replicas benchmark says why it has no table.
    if missing_for("postgres"):
        assert "(Replicas: no table, PostgreSQL is missing" in out
    else:
        assert "## Replicas: intake req/s" in out
    assert "All three find the same" in out
    header = next(line for line in out.splitlines() if line.startswith("| design "))
    ours = next(line for line in out.splitlines() if line.startswith("| lanes (ours)"))
    row = dict(zip(_cells(header), _cells(ours), strict=True))
    assert row["lost"] == "0" and row["applied twice"] == "0"
    final, accepted = row["final / accepted"].split(" / ")
    assert final == accepted
    # Every event the prompt benchmark posted through the warm lanes was written, once.
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("| rate ") and "| posted /" in line)
    warm = [line for line in lines if "| warm lanes (ours)" in line]
    assert warm
    for line in warm:
        row = dict(zip(_cells(header), _cells(line), strict=True))
        posted, written = row["posted / written"].split(" / ")
        assert posted == written and row["lost"] == "0" and row["applied twice"] == "0", row


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]
