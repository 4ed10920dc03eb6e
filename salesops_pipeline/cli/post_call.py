"""`salesops post-call`, `inbox`, `replay`, `dismiss` and `contact`: one post-call event handled
now, the inbox the pipeline works from, and one customer's story through it."""

import argparse
import json
import sys
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from salesops_pipeline import settings
from salesops_pipeline.cli.arguments import positive_int
from salesops_pipeline.clients import CrmClient, VoiceClient
from salesops_pipeline.errors import InvalidInputError
from salesops_pipeline.post_call.events import contact_id_of, parse_event
from salesops_pipeline.post_call.explain import explain_contact, story_text
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.processor import PostCallProcessor
from salesops_pipeline.post_call.status import AcceptStatus, EventStatus, HandlingStatus
from salesops_pipeline.text import terminal_safe
from salesops_pipeline.timezone import paris_time


def _post_call_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE|-", help="JSON event file, or - for stdin")
    parser.add_argument("--dry-run", action="store_true", help="show what would be done")
    parser.set_defaults(handler=_post_call)


def _inbox_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=20,
        help="how many events to list, newest received first (default 20)",
    )
    parser.add_argument(
        "--status",
        choices=[status.value for status in EventStatus],
        metavar="STATUS",
        help="only the events in this status: " + ", ".join(status.value for status in EventStatus),
    )
    parser.add_argument(
        "--stats",
        action="store_true",
        help="how far behind post-call is: the backlog, the age of the oldest waiting event,"
        " and the latency of the events finished in the last 5 minutes",
    )
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="with --stats (default text)"
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="delete now what the nightly inbox_retention_job deletes: finished events and"
        " refused or conflicting deliveries older than SALESOPS_INBOX_RETENTION_DAYS (30)",
    )
    parser.set_defaults(handler=_inbox)


def _contact_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("contact_id", metavar="CONTACT_ID", help="the provider's contactId")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--no-provider",
        action="store_true",
        help="leave out the contact as the provider shows it now (no network call)",
    )
    parser.set_defaults(handler=_contact)


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("call_id", metavar="CALL_ID")
    parser.set_defaults(handler=_replay)


def _dismiss_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("call_ids", metavar="CALL_ID", nargs="+", help="failed events' callIds")
    parser.set_defaults(handler=_dismiss)


def _read_event_input(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    path = Path(source)
    if not path.is_file():
        raise InvalidInputError(f"No such event file: {path}")
    return path.read_bytes()


def _post_call(args: argparse.Namespace) -> int:
    raw = _read_event_input(args.file)
    event = parse_event(raw)
    inbox = Inbox.configured()
    if args.dry_run:
        # A dry run creates no state; it only reads what the inbox already knows, if any.
        handled = inbox.get(event.callId) if inbox.exists() else None
        if handled is not None and EventStatus(handled.status).is_final:
            print(
                f"{terminal_safe(event.callId)}: already {handled.status}"
                f" ({terminal_safe(handled.last_decision or 'no decision recorded')});"
                " handling it again would write nothing"
            )
            return 0
    # Only this command talks to a provider; `inbox` and `replay` read the inbox alone.
    from salesops_pipeline.cli.provider import provider_transport

    with provider_transport(30.0) as transport:
        processor = PostCallProcessor(
            inbox=inbox, voice=VoiceClient(transport), crm=CrmClient(transport)
        )
        if args.dry_run:
            outcome = processor.preview(event)
        else:
            accepted = inbox.accept(event.callId, raw.decode())
            if accepted.status == AcceptStatus.CONFLICT:
                raise InvalidInputError(
                    f"callId {event.callId} is already in the inbox with a different payload"
                )
            with processor:
                outcome = processor.process(event.callId)
    print(_describe_outcome(outcome))
    succeeded = (
        EventStatus.APPLIED,
        EventStatus.NOTHING_TO_DO,
        EventStatus.SUPERSEDED,
        HandlingStatus.SKIPPED,
        HandlingStatus.DRY_RUN,
    )
    return 0 if outcome.status in succeeded else 1


def _describe_outcome(outcome) -> str:
    # Every value may come from the event or the provider: shown, never obeyed by the terminal.
    lines = [f"{terminal_safe(outcome.call_id)}: {outcome.status}"]
    if outcome.decision:
        lines.append(f"  decision: {terminal_safe(outcome.decision)}")
    for write in outcome.writes:
        verb = "would PATCH" if outcome.status == HandlingStatus.DRY_RUN else "PATCH"
        changes = ", ".join(f"{name}={value}" for name, value in write["changes"].items())
        lines.append(
            f"  {verb} contact {terminal_safe(write['contact'])}: {terminal_safe(changes)}"
        )
    if outcome.error:
        lines.append(f"  error: {terminal_safe(outcome.error)}")
    return "\n".join(lines)


def _existing_inbox() -> Inbox:
    """The inbox the intake writes to; a read-only command never creates one."""
    inbox = Inbox.configured()
    if not inbox.exists():
        where = (
            f"SALESOPS_HOME {settings.describe_home()}. Run this where the stack runs, or set"
            " SALESOPS_HOME."
            if inbox.kind == "sqlite"
            else f"{settings.DATABASE_URL_ENV}."
        )
        raise InvalidInputError(
            f"No inbox at {inbox.describe()}: no post-call event was ever received with {where}"
        )
    return inbox


def _inbox(args: argparse.Namespace) -> int:
    if args.format == "json" and not args.stats:
        raise InvalidInputError("--format json goes with --stats")
    if args.prune and args.stats:
        raise InvalidInputError("--prune goes alone, without --stats")
    if args.prune:
        # The setting is checked before anything is read or deleted.
        days = settings.inbox_retention_days()
        pruned = _existing_inbox().prune(
            timedelta(days=days), load_period=timedelta(days=settings.support_load_days())
        )
        print(f"Older than {days} days: {pruned.text()}")
        return 0
    inbox = _existing_inbox()
    if args.stats:
        lag = inbox.lag()
        print(json.dumps(lag.to_json()) if args.format == "json" else lag.text())
        return 0
    records = inbox.recent(limit=args.limit, status=args.status)
    if not records:
        print("No post-call events" + (f" with status {args.status}" if args.status else ""))
        return 0
    print(
        f"{'received (Paris)':<19}  {'callId':<16} {'contactId':<36} {'status':<14} {'tries':>5}"
        "  last decision"
    )
    for r in records:
        # The ids and what the decision or error quote came in a webhook: an escape sequence
        # or a newline in them is shown, never obeyed by the terminal.
        call_id = terminal_safe(r.call_id)
        contact = terminal_safe(contact_id_of(r.payload) or "?")
        detail = terminal_safe(r.last_error or r.last_decision or "")
        print(
            f"{paris_time(r.received_at):<19}  {call_id:<16} {contact:<36} {r.status:<14}"
            f" {r.attempts:>5}  {detail}"
        )
    counts = ", ".join(f"{status}: {n}" for status, n in sorted(inbox.counts().items()))
    print(f"\nAll events: {counts}")
    return 0


def _contact(args: argparse.Namespace) -> int:
    inbox = _existing_inbox()
    with _provider_reader(args.no_provider) as (read_contact, why_not):
        story = explain_contact(inbox, args.contact_id, read_contact)
    if why_not:
        story.provider_error = why_not
    if not story.events and story.provider is None:
        raise InvalidInputError(
            f"No post-call event of contact {terminal_safe(args.contact_id)!r} in the inbox at"
            f" {inbox.describe()}"
            + (
                f", and the provider does not show it: {story.provider_error}"
                if story.provider_error
                else ""
            )
        )
    if args.format == "json":
        print(json.dumps(story.to_json(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(story_text(story, terminal_safe)))
    return 0


@contextmanager
def _provider_reader(skip: bool):
    """What reads the contact at the provider, or why it is not read. Only a provider that
    holds the pipeline's writes answers the question: the configured one, or the local
    stack's; never a sandbox made up for this command."""
    if skip:
        yield None, "not read (--no-provider)"
        return
    from salesops_pipeline.devtools.stack import running_stack

    if settings.remote_api_host() is None and not running_stack(settings.salesops_home()):
        yield (
            None,
            (
                f"not read: no provider configured ({settings.REMOTE_API_HOST_ENV}) and no local"
                " stack running"
            ),
        )
        return
    from salesops_pipeline.cli.provider import provider_transport

    with provider_transport(10.0) as transport:
        voice = VoiceClient(transport)
        yield (lambda contact_id: voice.get_contact_fields(contact_id=contact_id)), None


def _replay(args: argparse.Namespace) -> int:
    inbox = _existing_inbox()
    if not inbox.replay(args.call_id):
        raise InvalidInputError(f"Unknown callId {args.call_id!r}: not in the inbox")
    record = inbox.get(args.call_id)
    note = (
        f" (already {record.status}: it will be recorded, not applied again)"
        if EventStatus(record.status).is_final
        else ""
    )
    print(f"{args.call_id} queued again{note}")
    return 0


def _dismiss(args: argparse.Namespace) -> int:
    days = settings.inbox_retention_days()
    inbox = _existing_inbox()
    refused = inbox.dismiss(args.call_ids)
    if refused:
        reasons = "; ".join(
            f"{terminal_safe(call_id)!r} is "
            + ("not in the inbox" if status is None else f"{status}, not failed")
            for call_id, status in refused.items()
        )
        raise InvalidInputError(f"Nothing dismissed: {reasons}")
    dismissed = list(dict.fromkeys(args.call_ids))
    print(
        f"Dismissed {len(dismissed)} failed event{'s' if len(dismissed) > 1 else ''}"
        f" ({', '.join(terminal_safe(call_id) for call_id in dismissed)}): never replayed,"
        f" pruned once they ended more than {days} days ago"
    )
    return 0


# Each command: the function that adds its arguments and sets its handler.
ARGUMENTS = {
    "post-call": _post_call_arguments,
    "inbox": _inbox_arguments,
    "replay": _replay_arguments,
    "dismiss": _dismiss_arguments,
    "contact": _contact_arguments,
}
