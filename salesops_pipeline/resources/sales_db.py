"""The company's sales database as a Dagster resource."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field

from salesops_pipeline.errors import SalesDatabaseError
from salesops_pipeline.sales.schema import open_sales_db, resolve_sales_db_path


class SalesDatabaseResource(dg.ConfigurableResource):
    """The company's SQLite sales database, opened read-only.

    Without a path, SALESOPS_SALES_DB is used; without that, the generated demo database.
    """

    path: str | None = Field(
        default=None,
        description="Path to the SQLite sales DB. Empty: SALESOPS_SALES_DB, else demo data.",
    )

    def resolved_path(self) -> Path:
        return resolve_sales_db_path(self.path)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection; a missing or unusable DB fails the step with one clear line,
        whether opening it finds the problem or a report reading it does."""
        try:
            opened = open_sales_db(self.resolved_path())
            conn = opened.__enter__()
        except SalesDatabaseError as error:
            # Retrying cannot make a missing file or table appear: fail once, plainly.
            raise dg.Failure(description=str(error), allow_retries=False) from None
        try:
            yield conn
        except SalesDatabaseError as error:
            # Nor an amount the DB holds, or a scanner the installation lacks.
            raise dg.Failure(description=str(error), allow_retries=False) from None
        finally:
            opened.__exit__(None, None, None)
