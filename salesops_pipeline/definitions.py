"""The one place that knows every asset, check, job, schedule, sensor and resource."""

import dagster as dg

from salesops_pipeline.assets import campaign_checks, campaigns, sales, sales_checks
from salesops_pipeline.constants import SALES_REPORTING_GROUP, VOICE_CAMPAIGNS_GROUP
from salesops_pipeline.jobs import campaign_duplicates_job, sales_reports_job
from salesops_pipeline.post_call_job import post_call_job, post_call_outcomes
from salesops_pipeline.resources import (
    InboxResource,
    PostCallRulesResource,
    ProviderResource,
    SalesDatabaseResource,
    WarehouseResource,
)
from salesops_pipeline.schedules import nightly_sales_reports_schedule
from salesops_pipeline.sensors import post_call_sensor

defs = dg.Definitions(
    assets=[
        *dg.load_assets_from_modules([sales], group_name=SALES_REPORTING_GROUP),
        *dg.load_assets_from_modules([campaigns], group_name=VOICE_CAMPAIGNS_GROUP),
        post_call_outcomes,
    ],
    asset_checks=dg.load_asset_checks_from_modules([sales_checks, campaign_checks]),
    jobs=[sales_reports_job, campaign_duplicates_job, post_call_job],
    schedules=[nightly_sales_reports_schedule],
    sensors=[post_call_sensor],
    resources={
        "sales_db": SalesDatabaseResource(),
        "warehouse": WarehouseResource(),
        # `salesops dev` points these at its sandbox provider when no real one is configured.
        "provider": ProviderResource(
            host=dg.EnvVar("REMOTE_API_HOST"), api_key=dg.EnvVar("REMOTE_API_KEY")
        ),
        "inbox": InboxResource(),
        "post_call_rules": PostCallRulesResource(),
    },
)
