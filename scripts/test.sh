#!/usr/bin/env bash
# Install the project with its dev tools, then lint, validate the Dagster definitions and run
# the test suite. Extra arguments go to pytest.
SALESOPS_EXTRAS="[dev]"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

# System packages some tests need: Chromium for the browser test, PostgreSQL's server for the
# PostgreSQL instance test. Installed from the system's packages where we can.
missing=()
{ command -v chromium && command -v chromedriver; } >/dev/null || missing+=(chromium chromium-driver)
have_postgres() { command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
have_postgres || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing ${missing[*]} from the system's packages..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "Missing system packages: ${missing[*]} (install them, e.g. with apt-get)" >&2
  fi
fi
pytest_args=()
if ! have_postgres; then
  echo "PostgreSQL cannot be installed here: the PostgreSQL instance test is not run." >&2
  pytest_args+=(-m "not postgres")
fi

ruff check .
ruff format --check .

# Validation must not depend on, or touch, the developer's own state.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
DAGSTER_HOME="$scratch" SALESOPS_HOME="$scratch/salesops" dagster definitions validate

python -m pytest "${pytest_args[@]}" "$@"
