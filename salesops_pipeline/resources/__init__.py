"""Dagster resources: thin, configurable handles on the project's data sources and stores."""

from salesops_pipeline.resources.post_call import (
    AlertsResource,
    InboxResource,
    PostCallRulesResource,
)
from salesops_pipeline.resources.provider import ProviderResource
from salesops_pipeline.resources.published import PublishedReportsResource
from salesops_pipeline.resources.sales_db import SalesDatabaseResource
from salesops_pipeline.resources.warehouse import WarehouseResource

__all__ = [
    "AlertsResource",
    "InboxResource",
    "PostCallRulesResource",
    "ProviderResource",
    "PublishedReportsResource",
    "SalesDatabaseResource",
    "WarehouseResource",
]
