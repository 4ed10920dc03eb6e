"""The `salesops` command line; see `main.py`."""

from salesops_pipeline.cli.main import main

__all__ = ["main"]
