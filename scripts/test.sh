#!/usr/bin/env bash
# Install the project with its dev tools, then lint, validate the Dagster definitions and run
# the test suite. Extra arguments go to pytest.
SALESOPS_EXTRAS="[dev]"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"

# System programs a few tests need: Chromium for the browser test, PostgreSQL's server for the
# PostgreSQL tests, iproute2 for the multi-host suite's network namespaces. As root they are
# installed from the system's packages; otherwise those tests are skipped, each saying how to
# install what is missing (the multi-host suite also needs root).
missing=()
{ command -v chromium && command -v chromedriver; } >/dev/null || missing+=(chromium chromium-driver)
have_postgres() { command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
have_postgres || missing+=(postgresql)
command -v ip >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Running as root: installing ${missing[*]} with apt-get for the browser and PostgreSQL tests."
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null \
      || echo "Could not install ${missing[*]}: the tests that need them will say so." >&2
  else
    echo "Not installed: ${missing[*]}. The tests that need them are skipped (install with: sudo apt-get install ${missing[*]})." >&2
  fi
fi

ruff check .
ruff format --check .

# Validation must not depend on, or touch, the developer's own state.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
DAGSTER_HOME="$scratch" SALESOPS_HOME="$scratch/salesops" dagster definitions validate

# With arguments, pytest runs exactly what they select.
if [ $# -gt 0 ]; then
  exec python -m pytest "$@"
fi
# The whole suite, in three runs at once. The tests that start the whole stack time their
# waits, so they run one at a time and get the CPU first. Beside them, at a lower priority,
# on what they leave: the multi-host suite (the stack on hosts of its own, as root), whose
# deadlines are minutes beyond what it takes and which spends much of its time waiting out
# the outages it makes; and the in-process layers, the benchmarks' smoke run and the stack
# tests whose deadlines leave minutes of room, on three workers (many of these tests wait on
# sockets and subprocesses). The reports of the two runs in the background follow the
# other's.
stack_log="$scratch/stack-tests.log"
hosts_log="$scratch/multi-host-tests.log"
python -m pytest -p no:cacheprovider -m "e2e and not smoke and not shares_cores and not multihost" \
  >"$stack_log" 2>&1 &
stack_pid=$!
nice -n 10 python -m pytest -p no:cacheprovider -m multihost >"$hosts_log" 2>&1 &
hosts_pid=$!
# Started in the background, they ignore Ctrl-C: they are stopped with SIGTERM, which their
# tests unwind like Ctrl-C, stopping the stacks and removing the hosts they started.
trap 'kill "$stack_pid" "$hosts_pid" 2>/dev/null || true' INT TERM
trap 'kill "$stack_pid" "$hosts_pid" 2>/dev/null || true; rm -rf "$scratch"' EXIT
quick=0
nice -n 10 python -m pytest -m "not e2e or smoke or shares_cores" -n 3 || quick=$?
hosts=0
wait "$hosts_pid" || hosts=$?
stack=0
wait "$stack_pid" || stack=$?
echo
echo "The stack on hosts of its own (multi-host suite):"
cat "$hosts_log"
echo
echo "The tests that start the whole stack, one at a time:"
cat "$stack_log"
exit $(( quick != 0 ? quick : hosts != 0 ? hosts : stack ))
