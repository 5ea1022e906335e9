#!/usr/bin/env bash
# The test command: lint, format check, type check, then every test against real
# components (Mosquitto, pymodbus servers, socat pty pairs, SQLite files, PostgreSQL,
# victoria-metrics for the InfluxDB writer).
set -euo pipefail
cd "$(dirname "$0")/.."
# victoria-metrics speaks InfluxDB's v2 write API: the InfluxDB writer is tested against it;
# Debian's Chromium drives the page tests (Playwright never downloads a browser); pango and
# a CJK font for the PDF reports; poppler-utils to read the PDFs back; docker-compose (v1)
# validates the production compose file without a Docker engine; faketime runs a gateway
# on a wrong clock; dygraphs and Leaflet draw the history charts and the truck map
bash scripts/bootstrap.sh victoria-metrics chromium fonts-wqy-zenhei \
    libpango-1.0-0 libpangoft2-1.0-0 poppler-utils docker-compose systemd faketime \
    libjs-dygraphs libjs-leaflet
# the alert service's store is tested against a real PostgreSQL as well as SQLite
bash scripts/ensure_postgres.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" && ruff check . && ruff format --check .
echo "== mypy" && mypy
# the benchmarks too (each a script: its siblings import by their own names)
MYPYPATH=bench mypy --follow-imports=silent bench/*.py
# four workers on two cores: the tests mostly wait on real processes (COLDCHAIN_TEST_WORKERS=0
# runs them in this process, e.g. to debug one)
echo "== pytest" && pytest -n "${COLDCHAIN_TEST_WORKERS:-4}" --durations=15 "$@"
