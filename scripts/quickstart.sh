#!/usr/bin/env bash
# The README's first command: install the project into .venv and run the node's main job end
# to end on embedded defaults (SQLite, local spool, loopback) in ./demo (rebuilt each run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e .
exec .venv/bin/exchange-server demo --dir "${DEMO_DIR:-demo}" --fresh
