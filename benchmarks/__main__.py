"""`python -m benchmarks [--scale N | --smoke] [--repeat R] [--only NAME ...]`: run the
benchmarks and print their tables (markdown), one per hot path."""

import argparse
import platform
import sys
import time

from benchmarks import (
    bench_cli,
    bench_day,
    bench_duplicates,
    bench_inbox,
    bench_ingestion,
    bench_intake,
    bench_multi_host,
    bench_post_call,
    bench_progress,
    bench_prompt,
    bench_replicas,
    bench_report_runs,
    bench_sales,
)

MODULES = {
    "cli": bench_cli,
    "duplicates": bench_duplicates,
    "ingestion": bench_ingestion,
    "sales": bench_sales,
    "report_runs": bench_report_runs,
    "intake": bench_intake,
    "inbox": bench_inbox,
    "replicas": bench_replicas,
    "post_call": bench_post_call,
    "progress": bench_progress,
    "day": bench_day,
    "prompt": bench_prompt,
    "multi_host": bench_multi_host,
}
# Run only when named with --only: it needs root (network namespaces), and its stack of five
# hosts takes minutes that the other benchmarks' smoke run has no room for.
ON_REQUEST = {"multi_host"}


def machine() -> str:
    import os

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument(
        "--scale",
        default="1000000",
        help="rows per input (contacts per campaign, sessions); 'smoke' for a quick check",
    )
    parser.add_argument("--smoke", action="store_true", help="a quick check: --scale smoke")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method (median taken)")
    parser.add_argument("--only", nargs="*", choices=sorted(MODULES), help="run only these")
    parser.add_argument(
        "--minutes", type=float, default=30.0, help="length of the day (--only day)"
    )
    args = parser.parse_args(argv)
    smoke = args.smoke or args.scale == "smoke"
    scale = 2_000 if smoke else int(args.scale)
    repeat = 1 if smoke else args.repeat
    print(f"# Benchmarks at scale {scale:,}, {repeat} run(s) per method\n\nMachine: {machine()}")
    for name in args.only or [name for name in MODULES if name not in ON_REQUEST]:
        started = time.monotonic()
        if name == "day":
            text = bench_day.main(scale, repeat, smoke=smoke, minutes=args.minutes)
        elif name in ("post_call", "intake", "replicas", "inbox", "prompt", "multi_host"):
            text = MODULES[name].main(scale, repeat, smoke=smoke)
        else:
            text = MODULES[name].main(scale, repeat)
        print(text, flush=True)
        print(f"\n({name}: {time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
