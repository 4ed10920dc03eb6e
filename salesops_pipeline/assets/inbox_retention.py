"""Inbox retention: the nightly job that keeps the post-call inbox bounded.

The inbox keeps every accepted event and what became of it, for the operators to look at. Once
an event has been finished for SALESOPS_INBOX_RETENTION_DAYS (30 by default) nobody needs it:
kept for ever, it would only grow the database and slow what reads it. Failed events stay
until a person replays or dismisses them (`salesops replay`, `salesops dismiss`).
"""

from datetime import timedelta

import dagster as dg

from salesops_pipeline import settings
from salesops_pipeline.resources import InboxResource
from salesops_pipeline.timezone import BUSINESS_TIMEZONE_NAME


@dg.op(tags={"salesops/run-kind": "inbox-retention"})
def prune_inbox(context: dg.OpExecutionContext, inbox: InboxResource) -> dict:
    """Delete from the post-call inbox what is finished and older than the retention: finished
    events with their writes, outcomes and queue entries, and the refused or conflicting
    deliveries kept for inspection, and the transfers that no longer count in any support
    agent's load. Failed events and the contacts' newest applied calls stay. Deletes in short
    batches, so that webhooks and post-call runs never wait long for the inbox."""
    days = settings.inbox_retention_days()
    pruned = inbox.get_inbox().prune(
        timedelta(days=days), load_period=timedelta(days=settings.support_load_days())
    )
    context.log.info(f"older than {days} days: {pruned.text()}")
    context.add_output_metadata(
        {
            "retention_days": days,
            **{f"pruned_{table}": n for table, n in pruned.rows.items()},
            "batches": pruned.batches,
            "longest_lock_ms": dg.MetadataValue.float(round(pruned.longest_lock_s * 1000, 1)),
        }
    )
    return {**pruned.rows, "longest_lock_ms": round(pruned.longest_lock_s * 1000, 1)}


@dg.job(
    tags={"salesops/run-kind": "inbox-retention"},
    description=(
        "Prune the post-call inbox of what finished more than SALESOPS_INBOX_RETENTION_DAYS"
        " ago (30 by default), so that it stays bounded; failed events wait for a person."
    ),
)
def inbox_retention_job():
    prune_inbox()


# Every night at 03:30 Paris time: after the sales reports (02:00), when calls and webhooks
# are fewest.
inbox_retention_schedule = dg.ScheduleDefinition(
    name="inbox_retention_schedule",
    job=inbox_retention_job,
    cron_schedule="30 3 * * *",
    execution_timezone=BUSINESS_TIMEZONE_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Nightly at 03:30 Europe/Paris: prune the post-call inbox of finished events and"
        " refused deliveries older than the retention, keeping it bounded."
    ),
)

defs = dg.Definitions(jobs=[inbox_retention_job], schedules=[inbox_retention_schedule])
