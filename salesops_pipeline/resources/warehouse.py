from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from salesops_pipeline import settings


class WarehouseResource(dg.ConfigurableResource):
    """The pipeline's DuckDB warehouse and the exports written beside it, under SALESOPS_HOME."""

    home: str | None = Field(
        default=None,
        description="Directory holding warehouse.duckdb and exports/. Empty: SALESOPS_HOME.",
    )

    def home_dir(self) -> Path:
        return Path(self.home).expanduser().absolute() if self.home else settings.salesops_home()

    def database_path(self) -> Path:
        return settings.warehouse_path(self.home_dir())

    def exports_dir(self) -> Path:
        return self.home_dir() / "exports"

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # DuckDBResource retries while another process holds the file's write lock, which
        # happens when two steps of a run write at the same moment.
        path = self.database_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with DuckDBResource(database=str(path)).get_connection() as conn:
            yield conn
