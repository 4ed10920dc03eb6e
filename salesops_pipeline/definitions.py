"""The one place that knows every asset, check, job, schedule and resource of the project."""

import dagster as dg

from salesops_pipeline.assets import sales, sales_checks
from salesops_pipeline.constants import SALES_REPORTING_GROUP
from salesops_pipeline.jobs import sales_reports_job
from salesops_pipeline.resources import SalesDatabaseResource, WarehouseResource
from salesops_pipeline.schedules import nightly_sales_reports_schedule

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([sales], group_name=SALES_REPORTING_GROUP),
    asset_checks=dg.load_asset_checks_from_modules([sales_checks]),
    jobs=[sales_reports_job],
    schedules=[nightly_sales_reports_schedule],
    resources={
        "sales_db": SalesDatabaseResource(),
        "warehouse": WarehouseResource(),
    },
)
