"""Checks that the cross-campaign duplicates can be acted upon."""

import dagster as dg

from salesops_pipeline.assets.campaigns import PREVIEW_ROWS, cross_campaign_duplicates
from salesops_pipeline.campaigns import duplicates as dup
from salesops_pipeline.campaigns.phones import mask_phone
from salesops_pipeline.resources import WarehouseResource


@dg.asset_check(asset=cross_campaign_duplicates)
def duplicates_are_in_both_campaigns(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Every number listed really occurs, normalised, among the contacts of both campaigns."""
    with warehouse.get_connection() as conn:
        stray = dup.duplicates_not_in_both(conn, "cross_campaign_duplicates")
        total = conn.execute("SELECT COUNT(*) FROM cross_campaign_duplicates").fetchone()[0]
    return dg.AssetCheckResult(
        passed=not stray,
        metadata={
            "duplicates_checked": total,
            "not_in_both": len(stray),
            "examples": dg.MetadataValue.md(
                "\n".join(f"- {mask_phone(p)}" for p in stray[:PREVIEW_ROWS]) or "none"
            ),
        },
    )
