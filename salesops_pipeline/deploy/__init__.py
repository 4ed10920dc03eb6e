"""Dagster instance configurations shipped with the project."""
