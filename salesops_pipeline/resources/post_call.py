from datetime import timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field

from salesops_pipeline import settings
from salesops_pipeline.clients.alerts import AlertWebhook
from salesops_pipeline.post_call.alerts import Alerter
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.lanes import LaneSettings, configured_lane_settings
from salesops_pipeline.post_call.processor import PostCallSettings


class InboxResource(dg.ConfigurableResource):
    """The post-call inbox the intake service writes and the post-call runs read, and how its
    work is spread over runs."""

    path: str | None = Field(
        default=None,
        description="SQLite file of the inbox. Empty: SALESOPS_DATABASE_URL if set, else"
        " SALESOPS_HOME/intake/.",
    )
    url: str | None = Field(
        default=None,
        description="PostgreSQL database of the inbox, shared by every host."
        " Empty: SALESOPS_DATABASE_URL, else the SQLite file.",
    )
    lanes: int | None = Field(
        default=None,
        description="Lanes run side by side, a contact always in the same one."
        " Empty: SALESOPS_POST_CALL_LANES, else 4.",
    )
    idle_seconds: float | None = Field(
        default=None,
        description="A run stops once its lane has been idle this long (0: after one pass)."
        " Empty: SALESOPS_POST_CALL_IDLE_SECONDS, else 20.",
    )
    batch: int | None = Field(
        default=None,
        description="Queue entries a run reads per pass."
        " Empty: SALESOPS_POST_CALL_BATCH, else 200.",
    )
    runs: int | None = Field(
        default=None,
        description="Runs the lanes are spread over, each draining its lanes in threads."
        " Empty: SALESOPS_POST_CALL_RUNS, else 1.",
    )
    run_seconds: float | None = Field(
        default=None,
        description="How long a run stays open before it hands its lanes to a successor."
        " Empty: SALESOPS_POST_CALL_RUN_SECONDS, else 3600.",
    )
    warm_hours: str | None = Field(
        default=None,
        description="When runs stay open, events or not: 'always', 'never', or windows of"
        " Paris time such as '08:00-20:00'. Empty: SALESOPS_POST_CALL_WARM_HOURS, else"
        " 08:00-20:00.",
    )

    def get_inbox(self) -> Inbox:
        if self.path:
            return Inbox(Path(self.path))
        if self.url:
            return Inbox(url=self.url)
        return Inbox.configured()

    def lane_settings(self) -> LaneSettings:
        return configured_lane_settings(
            lanes=self.lanes,
            runs=self.runs,
            batch=self.batch,
            idle_seconds=self.idle_seconds,
            max_seconds=self.run_seconds,
            warm_hours=self.warm_hours,
        )


class PostCallRulesResource(dg.ConfigurableResource):
    """How post-call events are read: which wrap-ups ask for a callback or for support."""

    callback_labels: list[str] = Field(
        default=["Rappel"], description="Wrap-ups (any case) that ask for a callback"
    )
    support_keyword: str = Field(
        default="support",
        description="A wrap-up containing this word (any case) asks for a support transfer",
    )
    support_team: str = Field(default="support", description="CRM team of the support agents")
    load_campaign: str = Field(
        default="B", description="Campaign whose assigned contacts make a support agent's load"
    )

    def get_settings(self) -> PostCallSettings:
        return PostCallSettings(
            callback_labels=tuple(self.callback_labels),
            support_keyword=self.support_keyword,
            support_team=self.support_team,
            load_campaign=self.load_campaign,
            support_load_days=settings.support_load_days(),
        )


class AlertsResource(dg.ConfigurableResource):
    """Where the operators are told that post-call is behind or that a post-call run failed:
    a Slack incoming webhook, or any chat taking Slack's `{"text": ...}` messages."""

    webhook_url: str | None = Field(
        default=None,
        description="The chat's incoming webhook URL, a secret (give it as an EnvVar). Empty:"
        " SALESOPS_ALERT_WEBHOOK_URL; neither: no alert is sent.",
    )
    dagster_url: str | None = Field(
        default=None,
        description="The Dagster UI's address, for alerts to link to. Empty:"
        " SALESOPS_DAGSTER_URL, which `salesops dev` sets.",
    )

    def get_alerter(self, inbox: Inbox) -> Alerter | None:
        url = self.webhook_url or settings.alert_webhook_url()
        if not url:
            return None
        clear_after = timedelta(seconds=settings.alert_clear_after_seconds())
        return Alerter(inbox, AlertWebhook(url), clear_after=clear_after)

    def get_dagster_url(self) -> str | None:
        return self.dagster_url.rstrip("/") if self.dagster_url else settings.dagster_url()
