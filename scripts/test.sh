#!/usr/bin/env bash
# The test command: lint, format check, type check, then every test against real
# components (Mosquitto, pymodbus servers, socat pty pairs, SQLite files).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" && ruff check . && ruff format --check .
echo "== mypy" && mypy
echo "== pytest" && pytest "$@"
