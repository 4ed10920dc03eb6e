from pathlib import Path

import dagster as dg
from pydantic import Field

from salesops_pipeline import settings
from salesops_pipeline.post_call.inbox import Inbox
from salesops_pipeline.post_call.processor import PostCallSettings


class InboxResource(dg.ConfigurableResource):
    """The post-call inbox the intake service writes and the post-call runs read."""

    path: str | None = Field(
        default=None, description="SQLite file of the inbox. Empty: SALESOPS_HOME/intake/."
    )

    def get_inbox(self) -> Inbox:
        return Inbox(Path(self.path) if self.path else settings.inbox_path())


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
        )
