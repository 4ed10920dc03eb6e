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

# Post-call runs carry this tag; the instance lets one such run go at a time (dagster.yaml).
POST_CALL_RUN_TAG = {"salesops/run-kind": "post-call"}
# Events per post-call run: large enough to spread a run's start-up cost, small enough that a
# run finishes well within a minute.
POST_CALL_BATCH_SIZE = 100
