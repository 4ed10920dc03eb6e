"""`salesops duplicates`: the numbers two campaigns both call (Q1), from a terminal."""

import argparse
import sys
import tempfile
from pathlib import Path

import duckdb

from salesops_pipeline.campaigns.duplicates import (
    Duplicate,
    duplicates_json,
    duplicates_text,
    find_duplicates,
)
from salesops_pipeline.campaigns.ingest import LoadProgress, check_campaign_pair, load_campaigns
from salesops_pipeline.cli.arguments import positive_float, quiet_argument
from salesops_pipeline.cli.progress import LiveProgress, live_progress
from salesops_pipeline.cli.provider import provider_transport
from salesops_pipeline.clients import VoiceClient

# Unreadable numbers named on the terminal per campaign; the asset's metadata lists more.
UNREADABLE_SHOWN = 5
# Listed numbers that are not valid, named on the terminal; `--format json` marks each.
INVALID_SHOWN = 10


def _duplicates_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: a block per number (default); json: a list, each number with phone_valid",
    )
    parser.add_argument("--campaign-a", default="A", metavar="ID", help="default: A")
    parser.add_argument("--campaign-b", default="B", metavar="ID", help="default: B")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for each answer of the provider (default 30)",
    )
    quiet_argument(parser)
    parser.set_defaults(handler=_duplicates)


def _duplicates(args: argparse.Namespace) -> int:
    check_campaign_pair(args.campaign_a, args.campaign_b)
    # A database file of its own rather than one in memory: a load bounds DuckDB's memory,
    # and what does not fit goes to that file, not to a `.tmp` folder wherever the command
    # was run.
    with tempfile.TemporaryDirectory(prefix="salesops-duplicates-") as scratch:
        conn = duckdb.connect(str(Path(scratch) / "contacts.duckdb"))
        try:
            with provider_transport(args.timeout) as transport, live_progress(args.quiet) as shown:
                loads = load_campaigns(
                    conn,
                    VoiceClient(transport),
                    args.campaign_a,
                    args.campaign_b,
                    on_progress=_shown_per_campaign(shown) if shown else None,
                )
            found = find_duplicates(conn)
        finally:
            conn.close()
    for load in loads:
        if load.contacts == 0 and not load.rejected:
            print(
                f"salesops: campaign {load.campaign} is empty: the provider returned no contacts"
                " for it (is the campaign id right?)",
                file=sys.stderr,
            )
        for rejected in load.rejected:
            print(
                f"salesops: skipped malformed record {rejected.index} of campaign"
                f" {load.campaign} (id {rejected.record_id}): {rejected.reason}",
                file=sys.stderr,
            )
        if load.unreadable_phones:
            shown = load.unreadable_examples[:UNREADABLE_SHOWN]
            more = load.unreadable_phones - len(shown)
            print(
                f"salesops: campaign {load.campaign}: {load.unreadable_phones} contacts have no"
                " readable phone number and are left out of the comparison: "
                + ", ".join(f"contact {contact} ({problem})" for contact, problem in shown)
                + (f" and {more} more" if more > 0 else ""),
                file=sys.stderr,
            )
    _name_invalid_numbers(found)
    print(duplicates_json(found) if args.format == "json" else duplicates_text(found))
    return 0


def _name_invalid_numbers(found: list[Duplicate]) -> None:
    """Say which listed numbers are not valid today. They are listed all the same (a range the
    numbering plan's metadata does not know yet is still dialled), but one may be a typo, such
    as 0012345678 read as the US number +12345678: worth a look before acting on it. Named as
    the list shows them: the operator asked for these numbers."""
    invalid = [d.phone for d in found if not d.phone_valid]
    if not invalid:
        return
    shown = invalid[:INVALID_SHOWN]
    more = len(invalid) - len(shown)
    print(
        f"salesops: {len(invalid)} of the {len(found)} numbers listed"
        f" {'is' if len(invalid) == 1 else 'are'} not valid today (mistyped, or in a range not"
        " yet assigned), compared all the same: "
        + ", ".join(shown)
        + (f" and {more} more (--format json marks each)" if more > 0 else ""),
        file=sys.stderr,
    )


def _shown_per_campaign(display: LiveProgress):
    """A line per campaign, from its first page on, so that its rate counts its own time."""
    lines = {}

    def on_progress(progress: LoadProgress) -> None:
        if progress.campaign not in lines:
            lines[progress.campaign] = display.line(
                f"Campaign {progress.campaign}", "contacts read", rate_unit="contacts/s"
            )
        pages = f"{progress.pages:,} page" + ("s" if progress.pages != 1 else "")
        lines[progress.campaign].set(progress.contacts, pages)

    return on_progress


# Each command: the function that adds its arguments and sets its handler.
ARGUMENTS = {"duplicates": _duplicates_arguments}
