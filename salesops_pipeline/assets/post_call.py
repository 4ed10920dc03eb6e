"""Post-call (Q2): the sensor that turns the inbox's lanes into runs (kept open through the
warm hours), the job that drains a group of lanes, and the asset showing what each pass did."""

import time
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from salesops_pipeline import settings
from salesops_pipeline.assets.constants import (
    POST_CALL_GROUP,
    POST_CALL_LANE_TAG,
    POST_CALL_RUN_TAG,
    SALES_OPS_OWNER,
)
from salesops_pipeline.clients.alerts import AlertNotSent
from salesops_pipeline.post_call.alerts import (
    Alerter,
    Condition,
    lag_alert,
    lag_recovery,
    run_failure_alert,
    run_recovery,
)
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.lag import PostCallLag
from salesops_pipeline.post_call.lanes import (
    Handover,
    LaneSettings,
    LaneWake,
    drain_lanes,
    draining_lanes,
    group_name,
    handed_over,
)
from salesops_pipeline.post_call.processor import Outcome, PostCallProcessor
from salesops_pipeline.post_call.report_window import (
    REPORT_EVERY_SECONDS,
    ReportWindow,
    WindowReport,
)
from salesops_pipeline.post_call.status import EventStatus
from salesops_pipeline.post_call.warm import WarmHours
from salesops_pipeline.post_call.workers import release_dead_workers
from salesops_pipeline.resources import (
    AlertsResource,
    InboxResource,
    PostCallRulesResource,
    ProviderResource,
)
from salesops_pipeline.text import markdown_cell

# How often Dagster's daemon evaluates sensors, at the quickest.
DAEMON_SENSOR_LOOP_SECONDS = 5

post_call_outcomes = dg.AssetSpec(
    "post_call_outcomes",
    group_name=POST_CALL_GROUP,
    owners=[SALES_OPS_OWNER],
    kinds={"sqlite"},
    description=(
        "What the pipeline did after each call: callbacks rescheduled, contacts handed to"
        " support, events with nothing to do, and failures with their reason. Each post-call"
        " run reports here a minute of events at a time (counts, latency, backlog, lag and"
        " the latest outcomes); the full log is the inbox's `outcome` table, and `salesops"
        " contact` tells one customer's story."
    ),
)


class PostCallLaneConfig(dg.Config):
    lanes: list[int] = Field(description="The lanes this run drains, one thread each")
    lane_count: int = Field(description="How many lanes the work is spread over")
    idle_seconds: float = Field(
        description="Outside the warm hours, stop once the lanes have been idle this long"
    )
    batch: int = Field(description="Queue entries read per pass")
    max_seconds: float = Field(
        default=3600.0, description="Hand the lanes to a successor run after this long"
    )
    warm_hours: str = Field(
        default="never", description="When the run stays open, events or not (Paris time)"
    )
    report_seconds: float = Field(
        default=REPORT_EVERY_SECONDS,
        description="Report the events on post_call_outcomes at most this often",
    )


# Longest text shown in a cell of the outcomes table: a provider's error or a transfer's
# loads can run long, and one long cell squeezes the others to a character a line.
CELL_CHARS = 90


def _cell(text: str, limit: int = CELL_CHARS) -> str:
    text = " ".join(str(text).split())
    return markdown_cell(text if len(text) <= limit else text[: limit - 1] + "…")


def outcomes_markdown(outcomes: list[Outcome], events: int | None = None) -> str:
    """The window's last outcomes as a table for the Dagster UI. Every cell may carry what a
    webhook sent (its callId, wrap-up in the decision, a provider's error): shown, never
    rendered."""
    lines = ["| callId | status | decision | written | error |", "|---|---|---|---|---|"]
    for o in outcomes:
        written = "; ".join(
            ", ".join(f"{k}={v}" for k, v in w["changes"].items()) for w in o.writes
        )
        cells = [
            _cell(o.call_id),
            o.status,
            _cell(o.decision),
            _cell(written or "–", 60),
            _cell(o.error or ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if events is not None and events > len(outcomes):
        lines.append(
            f"\nThe last {len(outcomes)} of {events} events; `salesops inbox` and"
            " `salesops contact` show every one."
        )
    return "\n".join(lines)


def window_metadata(inbox: Inbox, window: WindowReport) -> dict:
    """Numbers the asset's plots chart over time, one point per report: the window's events by
    status, its latency (from the intake's storage to the provider's confirmation), and the
    inbox's backlog and lag when it was reported."""
    lag = inbox.lag()
    statuses = {status.value: 0 for status in EventStatus} | window.statuses
    figures = {
        "latency_p50_s": window.latency_p50_s,
        "latency_p95_s": window.latency_p95_s,
        "backlog": lag.backlog,
        "lag_s": lag.lag_s,
    }
    return {
        "events": window.events,
        **{f"events_{status}": n for status, n in statuses.items()},
        "writes": window.writes,
        "window_s": dg.MetadataValue.float(round(window.seconds, 1)),
        **{
            name: dg.MetadataValue.float(float(value))
            for name, value in figures.items()
            if value is not None
        },
        "outcomes": dg.MetadataValue.md(outcomes_markdown(window.latest, window.events)),
    }


@dg.op(tags=POST_CALL_RUN_TAG)
def apply_post_call_events(
    context: dg.OpExecutionContext,
    config: PostCallLaneConfig,
    inbox: InboxResource,
    provider: ProviderResource,
    post_call_rules: PostCallRulesResource,
) -> dict:
    """Reschedule requested callbacks and hand contacts to support, event by event, each
    contact's calls oldest first, for the contacts of this run's lanes.

    Each event is handled on its own: one that fails is recorded (and retried later when the
    failure is temporary) without stopping the others. An event older than a call already
    applied to its contact ends superseded, writing nothing. Within the warm hours the run
    stays open and takes each new event as it arrives; outside them it stops once its lanes
    have been idle for a while. It reports each pass here.
    """
    group = group_name(config.lanes)
    if context.dagster_run.tags.get(POST_CALL_LANE_TAG) == handed_over(group):
        # A retry of a run that was handing its lanes over (Dagster copies its tags): the
        # successor the sensor asks for takes the lanes; this one would drain beside it.
        context.log.info(f"lanes {group}: handed over by the run this one retries; nothing to do")
        return {}
    settings = LaneSettings(
        lanes=config.lane_count,
        runs=1,
        batch=config.batch,
        idle_seconds=config.idle_seconds,
        max_seconds=config.max_seconds,
        warm_hours=WarmHours.parse(config.warm_hours),
    )
    store = inbox.get_inbox()
    rules = post_call_rules.get_settings()
    processors = {
        lane: PostCallProcessor(
            inbox=store,
            voice=provider.get_voice_client(),
            crm=provider.get_crm_client(),
            settings=rules,
            run_id=context.run_id,
        )
        for lane in config.lanes
    }

    window = ReportWindow(every_seconds=config.report_seconds)

    def report(passes: list[tuple[int, list[Outcome], int]]) -> None:
        # One log message for every pass that ended since the last call, each event on a line
        # of its own: a busy minute is a few hundred entries in the run's log, not one per
        # event. The asset hears of them a window at a time (`materialize_due`).
        outcomes = [outcome for _, batch, _ in passes for outcome in batch]
        context.log.info(
            "\n".join(f"post-call {o.call_id}: {o.status} ({o.decision})" for o in outcomes)
        )
        failed = [o for o in outcomes if o.error]
        if failed:
            context.log.warning("\n".join(f"post-call {o.call_id}: {o.error}" for o in failed))
        window.add(
            outcomes,
            {lane: position for lane, _, position in passes},
            store.latencies([o.call_id for o in outcomes]),
        )
        materialize_due()

    def materialize(report: WindowReport) -> None:
        reached = ", ".join(
            f"lane {lane} to queue position {position}"
            for lane, position in report.positions.items()
        )
        context.log_event(
            dg.AssetMaterialization(
                asset_key=post_call_outcomes.key,
                description=(
                    f"{report.events} events in {report.seconds:.0f} s; {reached}"
                    f" (of {config.lane_count} lanes)"
                ),
                metadata=window_metadata(store, report),
            )
        )

    def materialize_due() -> None:
        if window.due():
            materialize(window.take())

    wake = LaneWake(
        lambda: store.changes(settings.wake_poll_seconds), settings.wake_fallback_seconds
    ).start()
    try:
        counts = drain_lanes(
            processors,
            settings,
            report,
            wake=wake,
            handover=_handover(context, store, group),
            on_tick=materialize_due,
        )
    except BaseException:
        for processor in processors.values():
            if processor.release_error is not None:
                context.log.warning(
                    f"post-call events of this run not released now: {processor.release_error}"
                )
            elif processor.released:
                context.log.warning(
                    f"released {len(processor.released)} post-call events:"
                    f" {', '.join(processor.released)}"
                )
        raise
    finally:
        wake.close()
        _report_the_rest(context, window, materialize)
    return dict(counts)


def _report_the_rest(context, window: ReportWindow, materialize) -> None:
    """The run's last window, however it ended; a failure to report it is told, and never
    hides why the run ended."""
    rest = window.take()
    if rest is None:
        return
    try:
        materialize(rest)
    except Exception as error:  # noqa: BLE001 - the run's own outcome matters more
        context.log.warning(f"the last {rest.events} post-call events were not reported: {error}")


def _handover(context: dg.OpExecutionContext, store: Inbox, group: str) -> Handover:
    """Give this run's lanes to a successor once it has been open for its time limit.

    The run retags its lanes as handed over: the run queue then lets a successor in (one run
    per lane tag), and post_call_sensor, which sees the lanes without a run, asks for one.
    This run goes on draining until the successor has registered its workers, so that
    events never wait for a run to start."""
    instance, run_id = context.instance, context.run_id

    def retire() -> bool:
        try:
            instance.add_run_tags(run_id, {POST_CALL_LANE_TAG: handed_over(group)})
        except Exception as error:  # noqa: BLE001 - the run then stops at its limit
            context.log.warning(f"lanes {group}: not handed over, the run stops: {error}")
            return False
        context.log.info(f"lanes {group}: time limit reached, handing over to a new run")
        return True

    mine = draining_lanes(group)

    def successor_ready() -> bool:
        # Any run now draining one of these lanes takes over: the successor, or a run of a new
        # layout of the lanes (SALESOPS_POST_CALL_RUNS or _LANES changed meanwhile).
        try:
            records = instance.get_run_records(
                filters=dg.RunsFilter(
                    job_name=post_call_job.name, statuses=[dg.DagsterRunStatus.STARTED]
                ),
                limit=100,
            )
            return any(
                r.dagster_run.run_id != run_id
                and mine & draining_lanes(r.dagster_run.tags.get(POST_CALL_LANE_TAG))
                and store.run_had_worker(r.dagster_run.run_id)
                for r in records
            )
        except Exception as error:  # noqa: BLE001 - asked again at the next tick
            context.log.warning(f"lanes {group}: could not look for the successor: {error}")
            return False

    return Handover(retire=retire, successor_ready=successor_ready)


@dg.job(
    tags={**POST_CALL_RUN_TAG, "dagster/max_retries": "3"},
    # One op: running it in the run's own process saves starting a second one per run, which
    # is most of an event's wait.
    executor_def=dg.in_process_executor,
    description=(
        "Apply the post-call events of a group of the inbox's lanes, staying open through the"
        " warm hours and until the lanes are idle (requested by post_call_sensor)."
    ),
)
def post_call_job():
    apply_post_call_events()


# A post-call run registers its worker in the inbox within seconds of starting; one still
# without a worker after this long died before it could (its process is gone).
WORKERLESS_RUN_GRACE_SECONDS = 45
# The key a lane's run was first asked under, on every run asked for the same waiting events
# (after a failure, and on Dagster's retries, which copy their run's tags).
POST_CALL_KEY_TAG = "salesops/post-call-key"
# A warm run that failed or was cancelled is replaced after this long.
WARM_RETRY_AFTER_SECONDS = 30
# Set by Dagster on a failed run when run retries will start it again.
WILL_RETRY_TAG = "dagster/will_retry"
# Runs of the job that are, or will soon be, draining their lane.
ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _launched_or_started_at(record: dg.RunRecord) -> float | None:
    """When a run entered STARTING or STARTED, if it is in one of them (epoch seconds)."""
    status = record.dagster_run.status
    if status == dg.DagsterRunStatus.STARTED:
        return record.start_time
    if status == dg.DagsterRunStatus.STARTING:
        moment = record.update_timestamp
        # Some run storages give it without a zone: it is in UTC.
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return None


def _key_for(instance: dg.DagsterInstance, key: str) -> str:
    """The run key to ask for a lane's waiting events, whose first key is `key`.

    Dagster starts a run key once: when the last run asked for these events failed (and no
    run retry will start it again) or was cancelled, the events it left would wait for their
    stale time. They are asked again under a key naming that run, so that each such run
    earns exactly one new run, and a tick that finds the new run asks for nothing more.
    """
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=post_call_job.name, tags={POST_CALL_KEY_TAG: key}),
        limit=1,
    )
    if not records:
        return key
    last = records[0].dagster_run
    if last.status == dg.DagsterRunStatus.CANCELED or (
        last.status == dg.DagsterRunStatus.FAILURE and last.tags.get(WILL_RETRY_TAG) != "true"
    ):
        return f"{key}-after-{last.run_id[:8]}"
    return key


def _warm_key_for(instance: dg.DagsterInstance, group: str, key: str) -> str | None:
    """The run key to keep `group`'s lanes warm with, when no run drains them.

    Each run of the group earns one successor: the key names the group's last run (one that
    ended, or one handing its lanes over). None while that run failed and a run retry will
    start it again."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=post_call_job.name,
            tags={POST_CALL_LANE_TAG: [group, handed_over(group)]},
        ),
        limit=1,
    )
    if not records:
        return key
    record = records[0]
    last = record.dagster_run
    if last.status == dg.DagsterRunStatus.FAILURE and last.tags.get(WILL_RETRY_TAG) == "true":
        return None
    if (
        last.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
        and record.end_time is not None
        and time.time() - record.end_time < WARM_RETRY_AFTER_SECONDS
    ):
        # A fault that fails every run (a full disk, a broken inbox) starts one run per
        # half-minute, not one per tick; events that arrive still get theirs at once.
        return None
    return f"{key}-after-{last.run_id[:8]}"


@dg.sensor(
    job=post_call_job,
    # The daemon evaluates sensors every 5 s at the quickest: declared as it is, the UI shows
    # the interval the sensor really ticks at.
    minimum_interval_seconds=DAEMON_SENSOR_LOOP_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests a post_call_job run for each group of the inbox's lanes that has new events,"
        " or is within the warm hours, and no run draining it; queues again the events whose"
        " retry is due, and frees at once the events held by runs that died."
    ),
)
def post_call_sensor(context: dg.SensorEvaluationContext, inbox: InboxResource):
    store = inbox.get_inbox()
    lanes = inbox.lane_settings()

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
    active = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=post_call_job.name, statuses=ACTIVE_STATUSES), limit=100
    )
    busy_lanes = set()
    for record in active:
        run = record.dagster_run
        busy_lanes.add(run.tags.get(POST_CALL_LANE_TAG))
        # A run launched or started that never registered a worker holds its lane and would
        # block every later run of it: fail it, run retries start it again. (Run monitoring
        # would fail a launched one too, but only after its start timeout and next poll.)
        since = _launched_or_started_at(record)
        if (
            since is not None
            and time.time() - since > WORKERLESS_RUN_GRACE_SECONDS
            and not store.run_had_worker(run.run_id)
        ):
            fail_dead_run(run.run_id, "it never started handling its events")
    requeued = store.requeue_due()
    epoch = store.epoch()
    waiting = store.lanes_with_work(lanes.lanes)
    warm = lanes.warm_hours.contains(datetime.now(UTC))
    # A group's run is requested up to the last position waiting in its lanes: a new key only
    # when new events arrived (or when the run asked for them failed), so a key is never asked
    # twice within an inbox, and the epoch tells one inbox file from the next (dagster issue
    # #15982). Within the warm hours a group without a run gets one, events or not.
    keys = {}
    for group in lanes.groups():
        name = group_name(group)
        if name in busy_lanes:
            continue
        last = max((waiting[lane] for lane in group if lane in waiting), default=None)
        base = f"post-call-{epoch}-lane{name}of{lanes.lanes}"
        if last is not None:
            keys[name] = (_key_for(context.instance, f"{base}-{last}"), f"{base}-{last}")
        elif warm:
            run_key = _warm_key_for(context.instance, name, f"{base}-warm")
            if run_key is not None:
                keys[name] = (run_key, f"{base}-warm")
    run_requests = [
        dg.RunRequest(
            run_key=run_key,
            run_config={
                "ops": {
                    "apply_post_call_events": {
                        "config": {
                            "lanes": sorted(draining_lanes(name)),
                            "lane_count": lanes.lanes,
                            "idle_seconds": lanes.idle_seconds,
                            "batch": lanes.batch,
                            "max_seconds": lanes.max_seconds,
                            "warm_hours": lanes.warm_hours.spec,
                            "report_seconds": settings.post_call_report_seconds(),
                        }
                    }
                }
            },
            tags={POST_CALL_LANE_TAG: name, POST_CALL_KEY_TAG: key},
        )
        for name, (run_key, key) in sorted(keys.items())
    ]
    if not run_requests:
        detail = f" ({requeued} queued again)" if requeued else ""
        return dg.SkipReason(
            (
                "new post-call events wait for the runs of their lanes"
                if waiting
                else "no new post-call events, and every warm lane has its run"
                if warm
                else "no new post-call events"
            )
            + detail
        )
    return dg.SensorResult(run_requests=run_requests)


POST_CALL_LAG_CHECK = "post_call_lag"


def lag_verdict(lag: PostCallLag, limit: float) -> tuple[bool, dict]:
    """Whether the oldest waiting event is younger than `limit` seconds, and the figures that
    say so."""
    metadata = {
        "lag_s": dg.MetadataValue.float(lag.lag_s),
        "max_lag_s": dg.MetadataValue.float(limit),
        "backlog": dg.MetadataValue.int(lag.backlog),
        "pending": dg.MetadataValue.int(lag.pending),
        "retrying": dg.MetadataValue.int(lag.retrying),
        "finished_last_5m": dg.MetadataValue.int(lag.finished_last_5m),
    }
    if lag.latency_p95_s is not None:
        metadata["latency_p95_s"] = dg.MetadataValue.float(lag.latency_p95_s)
    return lag.within(limit), metadata


@dg.asset_check(
    asset=post_call_outcomes.key,
    name=POST_CALL_LAG_CHECK,
    description=(
        "The oldest post-call event still waiting is younger than SALESOPS_MAX_POST_CALL_LAG_S"
        " (120 s by default). Evaluated every 30 s by post_call_lag_sensor, runs or not."
    ),
)
def post_call_lag(inbox: InboxResource) -> dg.AssetCheckResult:
    passed, metadata = lag_verdict(inbox.get_inbox().lag(), settings.max_post_call_lag_seconds())
    return dg.AssetCheckResult(
        passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata
    )


def _alert(context, alerter: Alerter | None, condition: Condition, active: bool, **messages):
    """Record what this evaluation saw of `condition` and send the messages due, of any
    condition (`Alerter.update`). A chat that cannot be reached is logged and the message left
    pending in the inbox for the next evaluation: it never stops the evaluation, nor holds it
    more than a few seconds."""
    if alerter is None:
        return
    try:
        sent = alerter.update(condition, active, **messages)
    except AlertNotSent as error:
        context.log.warning(f"{error}; sent at the next evaluation")
        return
    if sent:
        context.log.info(f"{len(sent)} alert message(s) sent to {alerter.webhook.shown}")


def post_call_lag_sensor_def() -> dg.SensorDefinition:
    """The sensor that evaluates post_call_lag, at the interval SALESOPS_POST_CALL_LAG_CHECK_S
    sets when the definitions load (30 s by default)."""
    interval = settings.post_call_lag_check_seconds()

    @dg.sensor(
        name="post_call_lag_sensor",
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Evaluates the post_call_lag check from the inbox every {interval} s, and alerts"
            " the operators when it starts failing and once it has passed again for"
            " SALESOPS_ALERT_CLEAR_AFTER_S: a stalled post-call pipeline starts no run, so a"
            " check that ran only with the job would never fail. Also sends the alert messages"
            " the chat could not take earlier."
        ),
    )
    def post_call_lag_sensor(
        context: dg.SensorEvaluationContext, inbox: InboxResource, alerts: AlertsResource
    ):
        store = inbox.get_inbox()
        lag = store.lag()
        limit = settings.max_post_call_lag_seconds()
        passed, metadata = lag_verdict(lag, limit)
        if not passed:
            context.log.error(
                f"post-call is behind: the oldest waiting event is {lag.lag_s:.0f} s old"
            )
        _alert(
            context,
            alerts.get_alerter(store),
            Condition.LAG,
            not passed,
            alert=lambda: lag_alert(lag, limit, alerts.get_dagster_url()),
            recovery=lambda since, now: lag_recovery(lag, since, now),
        )
        return dg.SensorResult(
            asset_events=[
                dg.AssetCheckEvaluation(
                    asset_key=post_call_outcomes.key,
                    check_name=POST_CALL_LAG_CHECK,
                    passed=passed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata=metadata,
                )
            ]
        )

    return post_call_lag_sensor


@dg.run_failure_sensor(
    monitored_jobs=[post_call_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Alerts the operators when a post_call_job run fails, once until a run succeeds again"
        " (SALESOPS_ALERT_WEBHOOK_URL)."
    ),
)
def post_call_run_failure_alert(
    context: dg.RunFailureSensorContext, inbox: InboxResource, alerts: AlertsResource
):
    store = inbox.get_inbox()
    run = context.dagster_run
    _alert(
        context,
        alerts.get_alerter(store),
        Condition.RUN_FAILED,
        True,
        alert=lambda: run_failure_alert(
            run.run_id, run.tags.get(POST_CALL_LANE_TAG), store.lag(), alerts.get_dagster_url()
        ),
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[post_call_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Tells the operators once that post-call runs succeed again after a failure was"
        " alerted, when none has failed for SALESOPS_ALERT_CLEAR_AFTER_S (sent then by"
        " post_call_lag_sensor)."
    ),
)
def post_call_run_recovery_alert(
    context: dg.RunStatusSensorContext, inbox: InboxResource, alerts: AlertsResource
):
    store = inbox.get_inbox()
    run_id = context.dagster_run.run_id
    _alert(
        context,
        alerts.get_alerter(store),
        Condition.RUN_FAILED,
        False,
        recovery=lambda since, now: run_recovery(run_id, store.lag(), since, now),
    )


defs = dg.Definitions(
    assets=[post_call_outcomes],
    asset_checks=[post_call_lag],
    jobs=[post_call_job],
    sensors=[
        post_call_sensor,
        post_call_lag_sensor_def(),
        post_call_run_failure_alert,
        post_call_run_recovery_alert,
    ],
)
