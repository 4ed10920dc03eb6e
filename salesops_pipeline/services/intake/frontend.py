"""The frontend's API: the progression and team-sales reports, read from the warehouse, or
from the shared PostgreSQL database they are published to when SALESOPS_DATABASE_URL is set.

Served by the intake service, behind the same key. It reads what the assets stored; it never
computes a report itself, so the frontend shows exactly what managers see in Dagster.
"""

import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import anyio
import duckdb
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from salesops_pipeline import postgres
from salesops_pipeline.errors import InvalidInputError, SalesDatabaseError
from salesops_pipeline.redaction import redact_url
from salesops_pipeline.sales import chart_links, published, reports
from salesops_pipeline.sales import warehouse as wh
from salesops_pipeline.sales.schema import open_sales_db
from salesops_pipeline.timezone import BUSINESS_TIMEZONE

logger = logging.getLogger("salesops.intake.frontend")

# A materialization holds the warehouse's write lock for seconds: the client is told to come
# back rather than kept waiting.
WAREHOUSE_BUSY_RETRY_AFTER_SECONDS = 1


class ProgressionDay(BaseModel):
    """One target day of the frontend contract; whole amounts are sent as integers."""

    date: str
    target_of_the_day: int | float
    amount_of_the_day: int | float
    progression_of_the_day: int | float
    target_accumulated: int | float
    amount_accumulated: int | float
    progression_accumulated: int | float


class TeamSalesRow(BaseModel):
    team: str
    status: str
    sessions: int
    amount: float
    team_unsubscription_rate: float | None


def _read_warehouse(path: Path, read: Callable[[duckdb.DuckDBPyConnection], object]):
    """Run `read` on a read-only connection; None when nothing was ever materialized.

    While a run writes the file, the answer is an immediate 503 with `Retry-After`: waiting
    here would hold one of the server's few worker threads for as long as the run writes.
    """
    if not path.is_file():
        return None
    try:
        conn = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as error:
        if "lock" in str(error).lower():
            raise HTTPException(
                status_code=503,
                detail="the warehouse is being written, retry shortly",
                headers={"Retry-After": str(WAREHOUSE_BUSY_RETRY_AFTER_SECONDS)},
            ) from None
        logger.error("warehouse %s unreadable: %s", path, error)
        raise HTTPException(status_code=503, detail="the warehouse cannot be read") from None
    try:
        return read(conn)
    finally:
        conn.close()


def _agent_known(sales_db_path: Callable[[], Path], agent: str) -> bool:
    """Whether the sales DB has `agent`; a 503 when the sales DB cannot be read."""
    try:
        with open_sales_db(sales_db_path()) as conn:
            return reports.agent_exists(conn, agent)
    except (SalesDatabaseError, sqlite3.Error, OSError) as error:
        # The path and the cause are for the logs: the frontend only needs to know it is away.
        logger.error("sales database unavailable: %s", error)
        raise HTTPException(
            status_code=503,
            detail="the sales database is unavailable (it is needed to look up an agent the"
            " warehouse has no progression for): retry later",
        ) from None


def _read_published(url: str, read: Callable[[str], object]):
    """Run `read` on the shared database; a 503 when it cannot be reached or read. Publishing
    swaps rows in one transaction, so there is never a write to wait for."""
    try:
        return read(url)
    except postgres.errors() as error:
        logger.error("published reports unreadable at %s: %s", redact_url(url), error)
        raise HTTPException(
            status_code=503, detail="the reports database is unavailable: retry later"
        ) from None


def _month_or_400(month: str) -> None:
    try:
        reports.parse_month(month)
    except InvalidInputError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None


def frontend_router(
    *,
    warehouse_path: Path,
    sales_db_path: Callable[[], Path],
    authenticated: Callable,
    chart_link_key: str,
    database_url: str | None = None,
) -> APIRouter:
    """The frontend's routes, reading the published tables at `database_url` when one is given,
    else the warehouse file and the sales DB. Every route takes the key; the chart also takes
    the link the progression asset shows in the Dagster UI, which a browser opens without it."""
    router = APIRouter(prefix="/api", tags=["frontend"])
    keyed = [Depends(authenticated)]

    if database_url:

        def stored_progression(month: str, agent: str):
            return _read_published(
                database_url, lambda url: published.stored_progression(url, month, agent)
            )

        def stored_team_sales():
            return _read_published(database_url, published.stored_team_sales)

        def stored_monthly_team_sales(month: str):
            return _read_published(
                database_url, lambda url: published.stored_monthly_team_sales(url, month)
            )

        def stored_progression_month(month: str):
            return _read_published(
                database_url, lambda url: published.stored_progression_month(url, month)
            )

        def agent_known(agent: str) -> bool:
            known = _read_published(database_url, lambda url: published.agent_known(url, agent))
            # Agents are published with the first month: before that, the month is the answer.
            return known is not False

    else:

        def stored_progression(month: str, agent: str):
            return _read_warehouse(
                warehouse_path, lambda conn: wh.stored_progression(conn, month, agent)
            )

        def stored_team_sales():
            return _read_warehouse(warehouse_path, wh.stored_team_sales)

        def stored_monthly_team_sales(month: str):
            return _read_warehouse(
                warehouse_path, lambda conn: wh.stored_monthly_team_sales(conn, month)
            )

        def stored_progression_month(month: str):
            rows = _read_warehouse(
                warehouse_path, lambda conn: wh.stored_progression_month(conn, month)
            )
            return rows or None

        def agent_known(agent: str) -> bool:
            return _agent_known(sales_db_path, agent)

    @router.get(
        "/progression",
        dependencies=keyed,
        response_model=list[ProgressionDay],
        summary="An agent's day-by-day progression toward target over a month (Q3.2)",
        responses={
            400: {"description": "Malformed month"},
            404: {"description": "Unknown agent, or month not computed yet"},
            503: {
                "description": "The warehouse is being written (see Retry-After), or a store"
                " it reads is unavailable: the reports database, or the sales DB (needed for"
                " an agent the month has no rows for)"
            },
        },
    )
    def progression(
        agent: str = Query(..., description="Agent username, e.g. martin.mougenot@…"),
        month: str = Query(..., description="Month as YYYY-MM", examples=["2025-04"]),
    ):
        _month_or_400(month)
        rows = stored_progression(month, agent)
        # What the warehouse holds is served as it is, sales DB or not: only an agent the month
        # has no rows for needs it, to tell an unknown agent from one without targets.
        if not rows and not agent_known(agent):
            raise HTTPException(status_code=404, detail=f"unknown agent {agent!r}")
        if rows is None:
            raise HTTPException(
                status_code=404,
                detail=f"no progression computed for {month} yet: materialize"
                f" agent_daily_progression for that month",
            )
        # The frontend contract, key order and whole numbers included.
        return [row.to_frontend() for row in rows]

    @router.get(
        "/team-sales",
        dependencies=keyed,
        response_model=list[TeamSalesRow],
        summary="Sessions and amounts per team and status, with unsubscription rates (Q3.1):"
        " of every sale, or of the sales booked in one month",
        responses={
            400: {"description": "Malformed month"},
            404: {"description": "Team sales (of that month) not computed yet"},
            503: {
                "description": "The warehouse is being written (see Retry-After), or the"
                " reports database is unavailable"
            },
        },
    )
    def team_sales(
        month: str | None = Query(
            None,
            description="Month as YYYY-MM: the sales booked that month. Without it, every sale.",
            examples=["2025-04"],
        ),
    ):
        if month is None:
            rows = stored_team_sales()
            if rows is None:
                raise HTTPException(
                    status_code=404, detail="team sales not computed yet: materialize team_sales"
                )
            return rows
        _month_or_400(month)
        rows = stored_monthly_team_sales(month)
        if rows is None:
            raise HTTPException(
                status_code=404,
                detail=f"team sales of {month} not computed yet: materialize"
                f" monthly_team_sales for that month",
            )
        return rows

    def chart_allowed(request: Request, month: str, signature: str | None) -> None:
        """The key, or the signed link of that month's chart."""
        if signature is not None:
            if chart_links.valid(chart_link_key, month, signature):
                return
            raise HTTPException(status_code=401, detail="invalid chart link")
        authenticated(request)

    @router.get(
        "/progression/chart",
        response_class=Response,
        summary="The month's progression chart, as a PNG: each agent against the month's target",
        responses={
            200: {"content": {"image/png": {}}, "description": "The chart"},
            400: {"description": "Malformed month"},
            401: {"description": "Missing or invalid key, or an invalid chart link"},
            404: {"description": "Month not computed yet"},
            503: {
                "description": "The warehouse is being written (see Retry-After), or unavailable"
            },
        },
    )
    async def progression_chart(
        request: Request,
        month: str = Query(..., description="Month as YYYY-MM", examples=["2025-04"]),
        signature: str | None = Query(
            None, description="The signed link shown in the Dagster UI, instead of the key"
        ),
    ):
        chart_allowed(request, month, signature)
        _month_or_400(month)
        # Reading and drawing take a thread of their own: the event loop keeps serving webhooks.
        png = await anyio.to_thread.run_sync(_chart_png, stored_progression_month, month)
        if png is None:
            raise HTTPException(
                status_code=404,
                detail=f"no progression computed for {month} yet: materialize"
                f" agent_daily_progression for that month",
            )
        # The figures change only when the month is materialized again: a short cache spares
        # redrawing for every view of a page, yet a refresh shows the new run soon.
        return Response(
            png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"}
        )

    return router


def _chart_png(stored_progression_month: Callable[[str], object], month: str) -> bytes | None:
    from salesops_pipeline.sales.charts import progression_chart_png

    rows = stored_progression_month(month)
    if rows is None:
        return None
    today = datetime.now(BUSINESS_TIMEZONE).date()
    return progression_chart_png(month, rows, today=today)
