#!/usr/bin/env bash
# The run command: install what is missing, then run the whole system on embedded
# defaults (own Mosquitto, simulated county, gateways, collector, alert service, web
# pages). Extra arguments go to `coldchain demo` (try --duration-s 60, or --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# pango for the PDF reports (WeasyPrint), a CJK font so that Chinese renders in them;
# dygraphs and Leaflet for the history charts and the truck map (served by the app)
bash scripts/bootstrap.sh libpango-1.0-0 libpangoft2-1.0-0 fonts-wqy-zenhei libjs-dygraphs libjs-leaflet
exec .venv/bin/coldchain demo "$@"
