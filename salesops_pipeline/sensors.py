"""Sensors: the pipeline's reactions to the outside world."""

import time

import dagster as dg

from salesops_pipeline.constants import POST_CALL_BATCH_SIZE
from salesops_pipeline.post_call.workers import release_dead_workers
from salesops_pipeline.post_call_job import post_call_job
from salesops_pipeline.resources import InboxResource

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
