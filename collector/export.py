"""CSV export of stored readings: one sensor, a gateway or a site, over a time range."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from typing import TextIO

from collector.store import Store

COLUMNS = [
    "time_utc",
    "ts_ms",
    "site",
    "gateway",
    "sensor",
    "quantity",
    "value",
    "q",
    "fault",
    "lat_deg",
    "lon_deg",
    "speed_kmh",
]


def parse_time(text: str) -> int:
    """ISO 8601 (a naive time is UTC) or epoch milliseconds -> epoch milliseconds."""
    if text.isdigit():
        return int(text)
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def export_csv(
    store: Store,
    out: TextIO,
    *,
    start_ms: int,
    end_ms: int,
    sensor: str | None = None,
    site: str | None = None,
    gateway: str | None = None,
) -> int:
    """Write the readings as CSV (gaps stay gaps: nothing is interpolated); returns rows."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    rows = 0
    for r in store.readings(
        start_ms=start_ms, end_ms=end_ms, sensor=sensor, site=site, gateway=gateway
    ):
        when = datetime.fromtimestamp(r.ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
        value = (
            ""
            if r.value is None
            else (str(r.value).lower() if isinstance(r.value, bool) else repr(float(r.value)))
        )
        writer.writerow(
            [
                when.replace("+00:00", "Z"),
                r.ts_ms,
                r.site,
                r.gateway,
                r.sensor,
                r.quantity.value,
                value,
                r.q.value,
                r.fault or "",
                "" if r.lat_deg is None else r.lat_deg,
                "" if r.lon_deg is None else r.lon_deg,
                "" if r.speed_kmh is None else r.speed_kmh,
            ]
        )
        rows += 1
    return rows
