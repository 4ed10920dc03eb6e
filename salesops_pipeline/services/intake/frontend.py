"""The frontend's API: the progression and team-sales reports, read from the warehouse, or
from the shared PostgreSQL database they are published to when SALESOPS_DATABASE_URL is set.

Served by the intake service, behind the same key. It reads what the assets stored; it never
computes a report itself, so the frontend shows exactly what managers see in Dagster.
"""

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import duckdb
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from salesops_pipeline import postgres
from salesops_pipeline.errors import InvalidInputError, SalesDatabaseError
from salesops_pipeline.sales import published, reports
from salesops_pipeline.sales import warehouse as wh
from salesops_pipeline.sales.schema import open_sales_db

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
        logger.error("published reports unreadable at %s: %s", postgres.redact(url), error)
        raise HTTPException(
            status_code=503, detail="the reports database is unavailable: retry later"
        ) from None


def frontend_router(
    *,
    warehouse_path: Path,
    sales_db_path: Callable[[], Path],
    authenticated: Callable,
    database_url: str | None = None,
) -> APIRouter:
    """The frontend's routes, reading the published tables at `database_url` when one is given,
    else the warehouse file and the sales DB."""
    router = APIRouter(prefix="/api", tags=["frontend"], dependencies=[Depends(authenticated)])

    if database_url:

        def stored_progression(month: str, agent: str):
            return _read_published(
                database_url, lambda url: published.stored_progression(url, month, agent)
            )

        def stored_team_sales():
            return _read_published(database_url, published.stored_team_sales)

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

        def agent_known(agent: str) -> bool:
            return _agent_known(sales_db_path, agent)

    @router.get(
        "/progression",
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
        try:
            reports.parse_month(month)
        except InvalidInputError as error:
            raise HTTPException(status_code=400, detail=str(error)) from None
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
        response_model=list[TeamSalesRow],
        summary="Sessions and amounts per team and status, with unsubscription rates (Q3.1)",
        responses={
            404: {"description": "Team sales not computed yet"},
            503: {
                "description": "The warehouse is being written (see Retry-After), or the"
                " reports database is unavailable"
            },
        },
    )
    def team_sales():
        rows = stored_team_sales()
        if rows is None:
            raise HTTPException(
                status_code=404, detail="team sales not computed yet: materialize team_sales"
            )
        return rows

    return router
