"""Jobs: named selections of assets that schedules and people launch together."""

import dagster as dg

from salesops_pipeline.constants import SALES_REPORTING_GROUP, VOICE_CAMPAIGNS_GROUP

# Team sales is not partitioned; in a run for one month it is simply refreshed as a whole
# alongside that month's progression.
sales_reports_job = dg.define_asset_job(
    name="sales_reports_job",
    selection=dg.AssetSelection.groups(SALES_REPORTING_GROUP),
    description="Refresh team sales and one month of agent progression, with their checks.",
)

campaign_duplicates_job = dg.define_asset_job(
    name="campaign_duplicates_job",
    selection=dg.AssetSelection.groups(VOICE_CAMPAIGNS_GROUP),
    description="Pull both campaigns' contacts from the provider and list the shared numbers.",
)
