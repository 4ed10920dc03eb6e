# Sourced by the other scripts: creates (or reuses) the project's virtualenv and installs the
# project into it. Python 3.11 is the only prerequisite.
#
# The install runs only when the virtualenv is new or the packaging files changed since the
# last one, so that a restart never needs a package index.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${SALESOPS_VENV:-.venv}"
EXTRAS="${SALESOPS_EXTRAS:-}"
if [ ! -x "$VENV/bin/python" ]; then
  PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "Python 3.11 is required (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }
  "$PYTHON" -m venv "$VENV"
fi

# One stamp per set of extras; an install with the dev extras also serves a plain start.
packaging_digest="$(cat setup.py pyproject.toml | "$VENV/bin/python" -c \
  'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
stamp() { local name="${1//[^a-z,]/}"; echo "$VENV/.salesops-installed${name:+-$name}"; }
installed() {
  local extras
  for extras in "$@"; do
    [ -f "$(stamp "$extras")" ] && [ "$(cat "$(stamp "$extras")")" = "$packaging_digest" ] && return 0
  done
  return 1
}
case "$EXTRAS" in
  "") wanted=("" "[dev]") ;;
  *) wanted=("$EXTRAS") ;;
esac
if ! installed "${wanted[@]}"; then
  echo "Installing the project into $VENV (its packaging files changed or it is new)..."
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".$EXTRAS"
  echo "$packaging_digest" > "$(stamp "$EXTRAS")"
fi
export PATH="$PWD/$VENV/bin:$PATH"
