#!/usr/bin/env bash
# Install the project with its dev tools, then lint, validate the Dagster definitions and run
# the test suite. Extra arguments go to pytest.
SALESOPS_EXTRAS="[dev]"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

# The browser test drives the Dagster UI with the system's Chromium; install it where we can.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing chromium and chromium-driver from the system's packages..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "chromium and chromium-driver are needed for the browser test (Debian: apt-get install chromium chromium-driver)" >&2
  fi
fi

ruff check .
ruff format --check .

# Validation must not depend on, or touch, the developer's own state.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
DAGSTER_HOME="$scratch" SALESOPS_HOME="$scratch/salesops" dagster definitions validate

python -m pytest "$@"
