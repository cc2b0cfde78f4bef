#!/usr/bin/env bash
# Builds .venv-bench: the product (with its test extras, for the local stack) plus the peers
# in bench/requirements.txt. Kept apart from .venv so benchmark packages never leak into the
# product's dependencies. Re-runs only when setup.py or bench/requirements.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BENCH_VENV:-.venv-bench}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.installed"
if [ -f "$STAMP" ] && [ "$STAMP" -nt setup.py ] && [ "$STAMP" -nt bench/requirements.txt ]; then
  exit 0
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet -e '.[dev]' -r bench/requirements.txt
touch "$STAMP"
