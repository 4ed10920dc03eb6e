"""The one place that knows every asset, check, job, schedule, sensor and resource.

Each domain's module under `assets/` brings its own definitions; this root merges them and
binds the resources they share.
"""

import warnings

import dagster as dg

from salesops_pipeline import settings
from salesops_pipeline.assets import campaigns, inbox_retention, post_call, sales
from salesops_pipeline.post_call.lanes import configured_lane_settings
from salesops_pipeline.resources import (
    AlertsResource,
    InboxResource,
    PostCallRulesResource,
    ProviderResource,
    PublishedReportsResource,
    SalesDatabaseResource,
    WarehouseResource,
)

# Dagster copies each sensor with its owners, an empty list, when it binds the resources, and
# warns that `owners` is in beta on every load of this code location (webserver, daemon,
# every run), though no sensor here sets one.
warnings.filterwarnings(
    "ignore",
    message=r"Parameter `owners` of initializer `SensorDefinition.__init__` is currently in beta",
    category=dg.BetaWarning,
)

# Post-call settings that make no sense fail the code location's load with their reason,
# rather than every tick of the sensor.
configured_lane_settings()
settings.post_call_report_seconds()

defs = dg.Definitions.merge(
    campaigns.defs,
    sales.defs,
    post_call.defs,
    inbox_retention.defs,
    dg.Definitions(
        # Every run is a handful of steps of seconds or less: one process runs them all, rather
        # than a process per step that takes longer to start than the step to run.
        executor=dg.in_process_executor,
        resources={
            "sales_db": SalesDatabaseResource(),
            "warehouse": WarehouseResource(),
            # Publishes the reports to SALESOPS_DATABASE_URL when it is set.
            "published_reports": PublishedReportsResource(),
            # `salesops dev` points these at its sandbox provider when no real one is configured.
            "provider": ProviderResource(
                host=dg.EnvVar("REMOTE_API_HOST"), api_key=dg.EnvVar("REMOTE_API_KEY")
            ),
            "inbox": InboxResource(),
            "post_call_rules": PostCallRulesResource(),
            "alerts": AlertsResource(),
        },
    ),
)
