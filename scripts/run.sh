#!/usr/bin/env bash
# Install the project and start the local stack on its embedded defaults: no credentials, no
# network. Extra arguments go to `salesops dev` (e.g. --dagster-port 3001).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
exec salesops dev "$@"
