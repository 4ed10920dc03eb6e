"""Sensors: the pipeline's reactions to the outside world."""

import dagster as dg

from salesops_pipeline.constants import POST_CALL_BATCH_SIZE
from salesops_pipeline.post_call_job import post_call_job
from salesops_pipeline.resources import InboxResource

# Batches requested per tick; more waits for the next tick, which keeps every tick short.
MAX_RUNS_PER_TICK = 10


@dg.sensor(
    job=post_call_job,
    minimum_interval_seconds=2,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests a post_call_job run for each batch of new events in the inbox, and queues"
        " again the events whose retry is due or whose run never finished them."
    ),
)
def post_call_sensor(context: dg.SensorEvaluationContext, inbox: InboxResource):
    store = inbox.get_inbox()
    requeued = store.requeue_due()
    cursor = int(context.cursor or 0)
    if cursor > store.last_seq():
        # The inbox was reset under us: start from its beginning rather than skip everything.
        context.log.warning(f"inbox queue ends before cursor {cursor}; restarting from 0")
        cursor = 0
    queued = store.queued_after(cursor, POST_CALL_BATCH_SIZE * MAX_RUNS_PER_TICK)
    if not queued:
        return dg.SkipReason(
            "no new post-call events" + (f" ({requeued} queued again)" if requeued else "")
        )
    run_requests = []
    for start in range(0, len(queued), POST_CALL_BATCH_SIZE):
        batch = queued[start : start + POST_CALL_BATCH_SIZE]
        first, last = batch[0].seq, batch[-1].seq
        run_requests.append(
            dg.RunRequest(
                # Queue positions are never reused, so a key is never asked twice; a retry of
                # an event is a new position, hence a new run (dagster issue #15982).
                run_key=f"post-call-{first}-{last}",
                run_config={
                    "ops": {
                        "apply_post_call_events": {"config": {"first_seq": first, "last_seq": last}}
                    }
                },
                tags={"salesops/events": str(len(batch))},
            )
        )
    return dg.SensorResult(run_requests=run_requests, cursor=str(queued[-1].seq))
