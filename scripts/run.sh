#!/usr/bin/env bash
# The run command: install what is missing, then run the whole system on embedded
# defaults (own Mosquitto, simulated county, gateways). Extra arguments go to
# `coldchain demo` (try --duration-s 60, or --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/coldchain demo "$@"
