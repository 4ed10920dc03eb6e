"""The call campaigns at the voice provider, the numbers two of them both call (Q1), the check
that the list can be acted upon, and the job that refreshes them."""

import dagster as dg
from pydantic import Field

from salesops_pipeline.assets.constants import SALES_OPS_OWNER, VOICE_CAMPAIGNS_GROUP
from salesops_pipeline.campaigns import duplicates as dup
from salesops_pipeline.campaigns.ingest import load_campaigns
from salesops_pipeline.campaigns.phones import mask_phone
from salesops_pipeline.resources import ProviderResource, WarehouseResource
from salesops_pipeline.resources.provider import provider_failures
from salesops_pipeline.text import markdown_cell, markdown_list

PREVIEW_ROWS = 20
DUPLICATES_TABLE = "cross_campaign_duplicates"


voice_provider = dg.AssetSpec(
    "voice_provider",
    group_name=VOICE_CAMPAIGNS_GROUP,
    owners=[SALES_OPS_OWNER],
    kinds={"api"},
    description=(
        "The voice provider's API (REMOTE_API_HOST): each call campaign's contacts with their"
        " numbers and last calls, as the provider holds them. Read by the campaigns' refresh;"
        " post-call writes go back to it. Without REMOTE_API_HOST, `salesops dev` serves a"
        " sandbox in its place."
    ),
)


class CampaignPairConfig(dg.Config):
    campaign_a: str = Field(default="A", description="First campaign id at the voice provider")
    campaign_b: str = Field(default="B", description="Second campaign id at the voice provider")


@dg.asset(
    group_name=VOICE_CAMPAIGNS_GROUP,
    owners=[SALES_OPS_OWNER],
    kinds={"api", "duckdb"},
    deps=[voice_provider],
)
def campaign_contacts(
    context: dg.AssetExecutionContext,
    config: CampaignPairConfig,
    provider: ProviderResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """The contacts two call campaigns will dial, as the voice provider holds them today.

    Each contact keeps the number as the campaign wrote it and gets it in E.164 (French numbers
    by default), so that the same person written five ways is recognised as one. Every
    possible number is compared, valid or not (`phone_valid` says which): a range that the
    numbering metadata calls unassigned is still dialled. Only what cannot be a number is left
    out of the comparison, listed with why. Records the provider serves malformed are skipped
    and listed with their reason.
    """
    client = provider.get_voice_client()
    with provider_failures(), warehouse.get_connection() as conn:
        loads = load_campaigns(
            conn, client, config.campaign_a, config.campaign_b, examples=PREVIEW_ROWS
        )
    rejected = [(load.campaign, r) for load in loads for r in load.rejected]
    unreadable = [
        (load.campaign, example) for load in loads for example in load.unreadable_examples
    ]
    for load in loads:
        context.log.info(
            f"campaign {load.campaign}: {load.contacts} contacts,"
            f" {load.invalid_phones} invalid numbers (compared all the same),"
            f" {load.unreadable_phones} unreadable numbers, {len(load.rejected)} malformed records"
        )
    metadata = {
        "dagster/row_count": sum(load.contacts for load in loads),
        "invalid_phones": sum(load.invalid_phones for load in loads),
        "unreadable_phones": sum(load.unreadable_phones for load in loads),
        "unreadable_details": dg.MetadataValue.md(
            markdown_list(
                f"campaign {markdown_cell(campaign)}, contact {markdown_cell(contact_id)}:"
                f" {markdown_cell(problem)}"
                for campaign, (contact_id, problem) in unreadable[:PREVIEW_ROWS]
            )
        ),
        "malformed_records": len(rejected),
        "malformed_details": dg.MetadataValue.md(
            markdown_list(
                f"campaign {markdown_cell(campaign)}, record {r.index}"
                f" (id {markdown_cell(r.record_id)}): {markdown_cell(r.reason)}"
                for campaign, r in rejected[:PREVIEW_ROWS]
            )
        ),
    }
    for load in loads:
        metadata[f"contacts_{load.campaign}"] = load.contacts
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name=VOICE_CAMPAIGNS_GROUP,
    owners=[SALES_OPS_OWNER],
    kinds={"duckdb"},
    deps=[campaign_contacts],
)
def cross_campaign_duplicates(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Phone numbers that both campaigns call, with each campaign's last call (Q1.1, Q1.2).

    Calling one person from two campaigns wastes agents' time and annoys the customer. For each
    number, the last call is the latest among that campaign's contacts with the number; empty
    when the campaign never called it. `phone_valid` says whether the number is valid today:
    an invalid one may be a typo, worth a look before acting on it.
    """
    with warehouse.get_connection() as conn:
        total = dup.build_duplicates_table(conn, DUPLICATES_TABLE)
        invalid = dup.count_invalid(conn, DUPLICATES_TABLE)
        first = dup.read_duplicates(conn, DUPLICATES_TABLE, limit=PREVIEW_ROWS)
    context.log.info(f"{total} numbers are in both campaigns, {invalid} of them not valid today")
    preview = [
        "| phone | last call A | last call B | valid |",
        "|---|---|---|---|",
        *(
            f"| {mask_phone(d.phone)} | {d.last_call_a or 'never'} | {d.last_call_b or 'never'}"
            f" | {'yes' if d.phone_valid else 'no'} |"
            for d in first
        ),
    ]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            # Listed all the same, but each may be a typo: worth a look before acting on it.
            "invalid_numbers": invalid,
            "preview": dg.MetadataValue.md("\n".join(preview)),
        }
    )


@dg.asset_check(asset=cross_campaign_duplicates)
def duplicates_are_in_both_campaigns(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Every number listed really occurs, normalised, among the contacts of both campaigns."""
    with warehouse.get_connection() as conn:
        stray = dup.duplicates_not_in_both(conn, DUPLICATES_TABLE)
        total = conn.execute(f"SELECT COUNT(*) FROM {DUPLICATES_TABLE}").fetchone()[0]
    return dg.AssetCheckResult(
        passed=not stray,
        metadata={
            "duplicates_checked": total,
            "not_in_both": len(stray),
            "examples": dg.MetadataValue.md(
                markdown_list(mask_phone(p) for p in stray[:PREVIEW_ROWS])
            ),
        },
    )


campaign_duplicates_job = dg.define_asset_job(
    name="campaign_duplicates_job",
    selection=dg.AssetSelection.groups(VOICE_CAMPAIGNS_GROUP).materializable(),
    description="Pull both campaigns' contacts from the provider and list the shared numbers.",
)

defs = dg.Definitions(
    assets=[voice_provider, campaign_contacts, cross_campaign_duplicates],
    asset_checks=[duplicates_are_in_both_campaigns],
    jobs=[campaign_duplicates_job],
)
