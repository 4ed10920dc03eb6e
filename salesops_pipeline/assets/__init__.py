"""Dagster wiring, one module per domain: its assets, checks, jobs, and the schedule or sensor
that drives them, each exposed as `defs` for definitions.py to merge."""
