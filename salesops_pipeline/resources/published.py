import dagster as dg
from pydantic import Field

from salesops_pipeline import settings
from salesops_pipeline.sales import published
from salesops_pipeline.sales.reports import ProgressionRow, TeamSalesReport


class PublishedReportsResource(dg.ConfigurableResource):
    """The shared PostgreSQL database the frontend reads the reports from, when one is
    configured; without one, publishing does nothing and the frontend reads the warehouse."""

    url: str | None = Field(
        default=None,
        description="postgresql:// URL to publish to. Empty: SALESOPS_DATABASE_URL, else none.",
    )

    def database_url(self) -> str | None:
        return self.url or settings.database_url()

    def publish_team_sales(self, report: TeamSalesReport) -> bool:
        """Replace the published team sales; whether there was a database to publish to."""
        url = self.database_url()
        if url:
            published.replace_team_sales(url, report)
        return bool(url)

    def publish_monthly_team_sales(self, report: TeamSalesReport) -> bool:
        """Replace the published month of team sales; whether there was a database to publish
        to."""
        url = self.database_url()
        if url:
            published.replace_monthly_team_sales(url, report)
        return bool(url)

    def publish_progression(
        self, month: str, rows: list[ProgressionRow], agents: list[str]
    ) -> bool:
        """Replace the published month and agents; whether there was a database to publish to."""
        url = self.database_url()
        if url:
            published.replace_progression_month(url, month, rows, agents)
        return bool(url)
