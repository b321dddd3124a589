#!/usr/bin/env bash
# The README's test command: create .venv, install the project with its dev tools, then run
# ruff (lint + format check), mypy (strict) and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
# With no arguments: the suite on ${PYTEST_WORKERS:-2} workers (pytest-xdist), then the few
# tests that restart a shared service (marker "serial") alone. Arguments run pytest as given.
if [ $# -eq 0 ]; then
    echo "== pytest (parallel)"; .venv/bin/pytest -n "${PYTEST_WORKERS:-2}" -m "not serial"
    echo "== pytest (serial)"; .venv/bin/pytest -m serial
else
    echo "== pytest"; .venv/bin/pytest "$@"
fi
