"""A run of the sales reports, from its start to its end, as Dagster executes it: team sales,
one month's team sales and progression with their checks, and the month's frontend files.

Ours runs every step in the run's own process (`in_process_executor`). The baseline is the same
job on Dagster's default executor, which starts a process per step: each loads Dagster and the
project before doing a fraction of a second of work. Both run on the generated demo DB at its
default size, through a Dagster instance on disk, each run in a fresh process that imports
Dagster and the project as a launched run's process does.
"""

import os
import tempfile
from pathlib import Path

from benchmarks.common import Case, cache_dir, compare, measure, prepared

MONTH = "2026-03"


def _demo_db() -> Path:
    return cache_dir() / "report-runs" / "sales.sqlite"


def _make_demo_db(path: str) -> None:
    from salesops_pipeline.sales.demo import generate_demo_db

    generate_demo_db(Path(path))


def ours():
    from salesops_pipeline.definitions import defs

    return defs.resolve_job_def("sales_reports_job")


def per_step():
    import dagster as dg

    from salesops_pipeline.assets.constants import SALES_REPORTING_GROUP
    from salesops_pipeline.definitions import defs

    job = dg.define_asset_job(
        "sales_reports_job_per_step",
        selection=dg.AssetSelection.groups(SALES_REPORTING_GROUP).materializable(),
        executor_def=dg.multiprocess_executor,
    )
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name)


def _setup(params: dict) -> dict:
    # The demo DB lies in the benchmarks' cache; the run's own state, in a folder of its own.
    os.environ["SALESOPS_SALES_DB"] = str(_demo_db())
    home = Path(tempfile.mkdtemp(prefix="report-runs-"))
    (home / "dagster").mkdir()
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    os.environ["SALESOPS_HOME"] = str(home)
    return params


def _run(params: dict) -> int:
    import dagster as dg

    from benchmarks import bench_report_runs

    job = dg.reconstructable(getattr(bench_report_runs, params["job"]))
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(job, instance=instance, tags={"dagster/partition": MONTH})
        if not result.success:
            raise RuntimeError(f"{params['job']}: the run failed")
        return len(result.get_asset_materialization_events())


def main(scale: int, repeat: int) -> str:
    if not _demo_db().is_file():
        _demo_db().parent.mkdir(parents=True, exist_ok=True)
        prepared(_make_demo_db, str(_demo_db()))
    figures = [
        measure(Case("in one process (ours)", _setup, _run), {"job": "ours"}, repeat),
        measure(
            Case("a process per step", _setup, _run, baseline=True), {"job": "per_step"}, repeat
        ),
    ]
    assets = {f.result for f in figures}
    return compare(
        f"Report runs: sales_reports_job for {MONTH}, demo DB",
        figures,
        0,
        "",
        note=f"Each run materializes {', '.join(map(str, sorted(assets)))} assets with their"
        " checks. Wall time of the run in a fresh process, from importing Dagster and the"
        " project to the run's end, as a launched run's process does.",
    )
