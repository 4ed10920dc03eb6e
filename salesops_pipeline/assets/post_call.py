"""Post-call (Q2): the sensor that turns the inbox into runs, the job that applies a batch of
events, and the asset showing what each batch did."""

import time
from collections import Counter

import dagster as dg
from pydantic import Field

from salesops_pipeline.assets.constants import (
    POST_CALL_BATCH_SIZE,
    POST_CALL_GROUP,
    POST_CALL_RUN_TAG,
    SALES_OPS_OWNER,
)
from salesops_pipeline.post_call.processor import Outcome, PostCallProcessor
from salesops_pipeline.post_call.workers import release_dead_workers
from salesops_pipeline.resources import InboxResource, PostCallRulesResource, ProviderResource
from salesops_pipeline.text import markdown_cell

post_call_outcomes = dg.AssetSpec(
    "post_call_outcomes",
    group_name=POST_CALL_GROUP,
    owners=[SALES_OPS_OWNER],
    kinds={"sqlite"},
    description=(
        "What the pipeline did after each call: callbacks rescheduled, contacts handed to"
        " support, events with nothing to do, and failures with their reason. Each post-call"
        " run reports its batch here; the full log is the inbox's `outcome` table."
    ),
)


class PostCallBatchConfig(dg.Config):
    first_seq: int = Field(description="First inbox queue position of the batch")
    last_seq: int = Field(description="Last inbox queue position of the batch (included)")


def outcomes_markdown(outcomes: list[Outcome]) -> str:
    """The batch as a table for the Dagster UI. Every cell may carry what a webhook sent (its
    callId, contactId, wrap-up in the decision, a provider's error): shown, never rendered."""
    lines = ["| callId | status | decision | written | error |", "|---|---|---|---|---|"]
    for o in outcomes:
        written = ", ".join(
            f"{w['contact']}: " + ", ".join(f"{k}={v}" for k, v in w["changes"].items())
            for w in o.writes
        )
        cells = [o.call_id, o.status, o.decision, written or "–", o.error or ""]
        lines.append("| " + " | ".join(markdown_cell(c) for c in cells) + " |")
    return "\n".join(lines)


@dg.op(tags=POST_CALL_RUN_TAG)
def apply_post_call_events(
    context: dg.OpExecutionContext,
    config: PostCallBatchConfig,
    inbox: InboxResource,
    provider: ProviderResource,
    post_call_rules: PostCallRulesResource,
) -> dict:
    """Reschedule requested callbacks and hand contacts to support, event by event, each
    contact's calls oldest first.

    Each event is handled on its own: one that fails is recorded (and retried later when the
    failure is temporary) without stopping the others. An event older than a call already
    applied to its contact ends superseded, writing nothing.
    """
    processor = PostCallProcessor(
        inbox=inbox.get_inbox(),
        voice=provider.get_voice_client(),
        crm=provider.get_crm_client(),
        settings=post_call_rules.get_settings(),
        run_id=context.run_id,
    )
    outcomes = []
    with processor:
        call_ids = processor.inbox.call_ids_between(config.first_seq, config.last_seq)
        for call_id in processor.in_call_order(call_ids):
            outcome = processor.process(call_id)
            outcomes.append(outcome)
            context.log.info(f"post-call {call_id}: {outcome.status} ({outcome.decision})")
            if outcome.error:
                context.log.warning(f"post-call {call_id}: {outcome.error}")
    counts = Counter(o.status for o in outcomes)
    context.log_event(
        dg.AssetMaterialization(
            asset_key=post_call_outcomes.key,
            description=f"queue positions {config.first_seq}–{config.last_seq}",
            metadata={
                "events": len(outcomes),
                **{f"events_{status}": n for status, n in sorted(counts.items())},
                "writes": sum(len(o.writes) for o in outcomes),
                "outcomes": dg.MetadataValue.md(outcomes_markdown(outcomes)),
            },
        )
    )
    return dict(counts)


@dg.job(
    tags={**POST_CALL_RUN_TAG, "dagster/max_retries": "3"},
    # One op: running it in the run's own process saves starting a second one per run, which
    # is most of an event's wait.
    executor_def=dg.in_process_executor,
    description="Apply a batch of post-call events from the inbox (requested by post_call_sensor).",
)
def post_call_job():
    apply_post_call_events()


# Batches requested per tick; more waits for the next tick, which keeps every tick short.
MAX_RUNS_PER_TICK = 10
# A post-call run registers its worker in the inbox within seconds of starting; one still
# without a worker after this long died before it could (its process is gone).
WORKERLESS_RUN_GRACE_SECONDS = 45


def parse_cursor(cursor: str | None, epoch: str) -> int:
    """The queue position reached in this inbox; 0 for another inbox (a reset) or none yet."""
    if not cursor or ":" not in cursor:
        return 0
    cursor_epoch, _, seq = cursor.partition(":")
    return int(seq) if cursor_epoch == epoch and seq.isdigit() else 0


@dg.sensor(
    job=post_call_job,
    minimum_interval_seconds=2,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests a post_call_job run for each batch of new events in the inbox, queues again"
        " the events whose retry is due, and frees at once the events held by runs that died."
    ),
)
def post_call_sensor(context: dg.SensorEvaluationContext, inbox: InboxResource):
    store = inbox.get_inbox()

    def run_finished(run_id: str) -> bool | None:
        run = context.instance.get_run_by_id(run_id)
        return True if run is None else run.is_finished

    def fail_dead_run(run_id: str, reason: str) -> None:
        # The default run launcher cannot see a killed run worker: say so, so that the run is
        # shown failed and run retries take over.
        run = context.instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            context.instance.report_run_failed(run, f"post-call worker died: {reason}")

    for dead in release_dead_workers(store, run_finished=run_finished, on_dead_run=fail_dead_run):
        context.log.warning(
            f"released {len(dead.released)} post-call events of a dead worker ({dead.reason})"
        )
    # A started run that never registered a worker holds the post-call concurrency slot and
    # would block every later run: fail it, run retries start it again.
    started = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=post_call_job.name, statuses=[dg.DagsterRunStatus.STARTED]),
        limit=20,
    )
    for record in started:
        if (
            record.start_time is not None
            and time.time() - record.start_time > WORKERLESS_RUN_GRACE_SECONDS
            and not store.run_had_worker(record.dagster_run.run_id)
        ):
            fail_dead_run(record.dagster_run.run_id, "it never started handling its events")
    requeued = store.requeue_due()
    epoch = store.epoch()
    cursor = parse_cursor(context.cursor, epoch)
    if cursor > store.last_seq():
        context.log.warning(f"inbox queue ends before cursor {cursor}; restarting from 0")
        cursor = 0
    queued = store.queued_after(cursor, POST_CALL_BATCH_SIZE * MAX_RUNS_PER_TICK)
    if not queued:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                "no new post-call events" + (f" ({requeued} queued again)" if requeued else "")
            ),
            cursor=f"{epoch}:{cursor}",
        )
    run_requests = []
    for start in range(0, len(queued), POST_CALL_BATCH_SIZE):
        batch = queued[start : start + POST_CALL_BATCH_SIZE]
        first, last = batch[0].seq, batch[-1].seq
        run_requests.append(
            dg.RunRequest(
                # Queue positions are never reused within an inbox, and the inbox's epoch tells
                # one inbox file from the next, so a key is never asked twice; a retry of an
                # event is a new position, hence a new run (dagster issue #15982).
                run_key=f"post-call-{epoch}-{first}-{last}",
                run_config={
                    "ops": {
                        "apply_post_call_events": {"config": {"first_seq": first, "last_seq": last}}
                    }
                },
                tags={"salesops/events": str(len(batch))},
            )
        )
    return dg.SensorResult(run_requests=run_requests, cursor=f"{epoch}:{queued[-1].seq}")


defs = dg.Definitions(assets=[post_call_outcomes], jobs=[post_call_job], sensors=[post_call_sensor])
