"""Names shared by the definitions: groups, owners, partitions, and the post-call runs' tag and
batch size."""

import dagster as dg

from salesops_pipeline.timezone import BUSINESS_TIMEZONE_NAME

SALES_REPORTING_GROUP = "sales_reporting"
VOICE_CAMPAIGNS_GROUP = "voice_campaigns"
POST_CALL_GROUP = "post_call"

SALES_OPS_OWNER = "team:sales_ops"

# Months are keyed `YYYY-MM`, the way managers and the frontend name them. The first month is
# the first one the company's sales DB holds targets for; end_offset=1 adds the month in
# progress so the nightly refresh can keep it current.
MONTHLY_PARTITIONS = dg.MonthlyPartitionsDefinition(
    start_date="2025-01",
    fmt="%Y-%m",
    timezone=BUSINESS_TIMEZONE_NAME,
    end_offset=1,
)

# Post-call runs carry this tag, and the lane they drain.
POST_CALL_RUN_TAG = {"salesops/run-kind": "post-call"}
# The instance lets one run per lane go at a time (dagster.yaml): a contact's events are never
# handled by two runs at once.
POST_CALL_LANE_TAG = "salesops/post-call-lane"
