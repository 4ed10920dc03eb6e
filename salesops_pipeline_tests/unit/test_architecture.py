"""The architecture the tree shows holds: only `definitions.py`, `assets/` and `resources/`
import Dagster, so the business core, the clients, the services, the local tooling and the CLI
load without it; and the built package ships the product alone."""

import json
import pkgutil
import subprocess
import sys

import salesops_pipeline
from salesops_pipeline_tests.conftest import REPO_ROOT

# Dagster's wiring lives here and nowhere else.
DAGSTER_WIRING = (
    "salesops_pipeline.definitions",
    "salesops_pipeline.assets",
    "salesops_pipeline.resources",
)

_IMPORT_EACH = """
import importlib, json, sys

def dagster_loaded():
    return sorted(
        m for m in sys.modules if m == "dagster" or m.startswith(("dagster.", "dagster_"))
    )

culprits = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    if dagster_loaded() and not culprits:
        culprits[name] = dagster_loaded()[:3]
print(json.dumps(culprits))
"""


def _plain_modules() -> list[str]:
    names = [
        module.name
        for module in pkgutil.walk_packages(salesops_pipeline.__path__, "salesops_pipeline.")
        # Running the CLI's __main__ would run a command.
        if not module.name.endswith("__main__")
    ]
    return [name for name in names if not name.startswith(DAGSTER_WIRING)]


def test_only_the_wiring_imports_dagster():
    modules = _plain_modules()
    assert {"salesops_pipeline.post_call.rules", "salesops_pipeline.cli.main"} <= set(modules)
    assert "salesops_pipeline.services.intake.app" in modules
    # One fresh interpreter imports them all: imports only ever add modules, so if Dagster is
    # absent after the last one, no module brought it in.
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, *modules],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    assert json.loads(result.stdout) == {}


def test_the_wiring_itself_does_import_dagster():
    # The check above would pass vacuously if the walk found nothing of the wiring's kind.
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, "salesops_pipeline.definitions"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    assert "salesops_pipeline.definitions" in json.loads(result.stdout)


def test_the_package_ships_no_tests_and_no_benchmarks():
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            "from distutils.core import run_setup;"
            "print('\\n'.join(run_setup('setup.py', stop_after='init').packages))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    packages = set(result.stdout.split())
    assert {"salesops_pipeline", "salesops_pipeline.post_call", "salesops_pipeline.cli"} <= packages
    assert all(name.split(".")[0] == "salesops_pipeline" for name in packages), packages


def test_the_help_and_the_report_modules_load_without_duckdb():
    # DuckDB is loaded by a report when it runs (it and its scanner cost about a third of a
    # second); `salesops --help` and importing the sales domain must not pay for it.
    probe = (
        "import sys\n"
        "import salesops_pipeline.sales.reports, salesops_pipeline.cli.sales\n"
        "from salesops_pipeline.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('duckdb' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert result.stderr.strip() == "False"
