# Sourced by the other scripts: creates (or reuses) the project's virtualenv and installs the
# project into it. Python 3.11 is the only prerequisite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${SALESOPS_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "Python 3.11 is required (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".${SALESOPS_EXTRAS:-}"
export PATH="$PWD/$VENV/bin:$PATH"
