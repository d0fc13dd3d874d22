#!/usr/bin/env bash
# Set everything up on a fresh machine and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${VENV:-.venv}"
# Tests are small by design; two torch threads match the two cores CI has.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "$VENV/bin/python" -m pytest -q "$@"
