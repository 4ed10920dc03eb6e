"""Names shared by the definitions: groups, owners, time zone, partitions."""

from zoneinfo import ZoneInfo

import dagster as dg

SALES_REPORTING_GROUP = "sales_reporting"
VOICE_CAMPAIGNS_GROUP = "voice_campaigns"

SALES_OPS_OWNER = "team:sales_ops"

# The company, its agents and its voice provider all live on Paris time.
BUSINESS_TIMEZONE_NAME = "Europe/Paris"
BUSINESS_TIMEZONE = ZoneInfo(BUSINESS_TIMEZONE_NAME)

# Months are keyed `YYYY-MM`, the way managers and the frontend name them. The first month is
# the first one the company's sales DB holds targets for; end_offset=1 adds the month in
# progress so the nightly refresh can keep it current.
MONTHLY_PARTITIONS = dg.MonthlyPartitionsDefinition(
    start_date="2025-01",
    fmt="%Y-%m",
    timezone=BUSINESS_TIMEZONE_NAME,
    end_offset=1,
)
