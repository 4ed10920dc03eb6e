"""The run that applies a batch of post-call events, and the asset showing what it did."""

from collections import Counter

import dagster as dg
from pydantic import Field

from salesops_pipeline.constants import POST_CALL_GROUP, POST_CALL_RUN_TAG, SALES_OPS_OWNER
from salesops_pipeline.post_call.processor import Outcome, PostCallProcessor
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
