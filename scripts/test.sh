#!/usr/bin/env bash
# Install the project with its dev tools, then lint, validate the Dagster definitions and run
# the test suite. Extra arguments go to pytest.
SALESOPS_EXTRAS="[dev]"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

ruff check .
ruff format --check .

# Validation must not depend on, or touch, the developer's own state.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
DAGSTER_HOME="$scratch" SALESOPS_HOME="$scratch/salesops" dagster definitions validate

python -m pytest "$@"
