"""The frontend's API: the progression and team-sales reports, read from the warehouse.

Served by the intake service, behind the same key. It reads what the assets stored; it never
computes a report itself, so the frontend shows exactly what managers see in Dagster.
"""

import time
from collections.abc import Callable
from pathlib import Path

import duckdb
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from salesops_pipeline import warehouse as wh
from salesops_pipeline.errors import InvalidInputError
from salesops_pipeline.sales import reports
from salesops_pipeline.sales.schema import open_sales_db


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
    """Run `read` on a read-only connection, waiting briefly while a run writes the file."""
    if not path.is_file():
        return None
    for attempt in range(20):
        try:
            conn = duckdb.connect(str(path), read_only=True)
        except duckdb.IOException:
            # A materialization holds the write lock for a moment; it is worth a short wait.
            time.sleep(0.05 * (attempt + 1))
            continue
        try:
            return read(conn)
        finally:
            conn.close()
    raise HTTPException(status_code=503, detail="the warehouse is being written, retry shortly")


def frontend_router(
    *, warehouse_path: Path, sales_db_path: Callable[[], Path], authenticated: Callable
) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["frontend"], dependencies=[Depends(authenticated)])

    @router.get(
        "/progression",
        response_model=list[ProgressionDay],
        summary="An agent's day-by-day progression toward target over a month (Q3.2)",
        responses={
            400: {"description": "Malformed month"},
            404: {"description": "Unknown agent, or month not computed yet"},
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
        with open_sales_db(sales_db_path()) as conn:
            if not reports.agent_exists(conn, agent):
                raise HTTPException(status_code=404, detail=f"unknown agent {agent!r}")
        rows = _read_warehouse(
            warehouse_path, lambda conn: wh.stored_progression(conn, month, agent)
        )
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
        responses={404: {"description": "Team sales not computed yet"}},
    )
    def team_sales():
        rows = _read_warehouse(warehouse_path, wh.stored_team_sales)
        if rows is None:
            raise HTTPException(
                status_code=404, detail="team sales not computed yet: materialize team_sales"
            )
        return rows

    return router
