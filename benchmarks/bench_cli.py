"""The terminal's quick answers, as whole processes: `salesops --help`, and the two reports on
the company's reference sales DB. Goals: under 0.5 s for the help, under 1 s for a report.

The baseline is the same team-sales report with Dagster imported first, which is what every
command paid before the CLI loaded only the domain of the command it runs."""

import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

from benchmarks.common import Case, compare, measure

REFERENCE_DB = (
    Path(__file__).resolve().parent.parent
    / "salesops_pipeline_tests"
    / "fixtures"
    / "database.sqlite"
)
MARTIN = "martin.mougenot@walter-learning.com"
GOALS = {"--help": 0.5, "team-sales": 1.0, "progression": 1.0}


def _salesops() -> str:
    return shutil.which("salesops", path=str(Path(sys.executable).parent)) or "salesops"


def _argv(argv: list[str], params: dict) -> list[str]:
    return argv


def _command(argv: list[str]):
    # A partial of a module-level function: the case travels to its own process by pickling.
    return partial(_argv, argv)


def run_command(argv: list[str]) -> int:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return 0


def main(scale: int, repeat: int) -> str:
    db = str(REFERENCE_DB)
    salesops = _salesops()
    team_sales = ["team-sales", "--db", db]
    cases = {
        "--help": [salesops, "--help"],
        "team-sales": [salesops, *team_sales],
        "progression": [
            salesops,
            "progression",
            "--agent",
            MARTIN,
            "--month",
            "2025-04",
            "--db",
            db,
        ],
    }
    figures = [
        measure(Case(f"salesops {name}", _command(argv), run_command), {}, repeat)
        for name, argv in cases.items()
    ]
    with_dagster = (
        "import sys, dagster; from salesops_pipeline.cli import main;"
        f" sys.exit(main({team_sales!r}))"
    )
    figures.append(
        measure(
            Case(
                "team-sales with Dagster imported",
                _command([sys.executable, "-c", with_dagster]),
                run_command,
                baseline=True,
            ),
            {},
            repeat,
        )
    )
    verdicts = ", ".join(
        f"{name} {'met' if f.median < goal else 'MISSED'} ({f.median:.2f} s < {goal} s)"
        for (name, goal), f in zip(GOALS.items(), figures, strict=False)
    )
    return compare(
        "CLI: whole process, reference sales DB", figures, 0, "", note=f"Goals: {verdicts}."
    )
