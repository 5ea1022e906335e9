"""The production store: InfluxDB 2 through influxdb-client.

Data model (documented in the README):

- measurement: the quantity (``temp_c``, ``rh_pct``, ``setpoint_c``, ``door_open``,
  ``compressor_on``, ``defrost_on``, ``run_h``, ``pressure_bar``, ``fan_on``,
  ``light_on``, ``aux_on``, ``alarm_on``, ``status_code``, ``position``), and ``event``
  for events;
- tags: ``site``, ``gateway``, ``sensor`` (events: ``site``, ``gateway``, ``kind``,
  ``source``);
- fields: ``value`` (float, or boolean for door, relays and alarms; absent for a fault),
  ``q`` (string), ``q_code`` (0 ok, 1 fault, 2 out_of_range, 3 clock_suspect),
  ``fault`` (string), ``received_ms`` (clock_suspect readings); position: ``lat_deg``,
  ``lon_deg``, ``speed_kmh``;
- time: the edge timestamp in milliseconds, plus a nudge below the millisecond that
  names the message (:func:`message_nudge_ns`).

InfluxDB keeps one point per measurement, tag set and time, so writing the same message
twice leaves one point each: redelivery is harmless by construction; a different
reading that shares a sensor's millisecond comes in another message, with another nudge,
and is kept beside it. The quarantine and the
seq watermark live in a small SQLite file next to the collector (collector.watermark).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write.point import Point
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError

from coldchain.wire import Quality, Quantity, ReadingsBatch
from collector import watermark
from collector.errors import StoreRefused, StoreUnavailable
from collector.quarantine import SCHEMA as QUARANTINE_SCHEMA
from collector.quarantine import row as kept_row
from collector.quarantine import trim
from collector.store import Incoming, QuarantineItem, StoredReading, WriteResult

Q_CODE = {Quality.OK: 0, Quality.FAULT: 1, Quality.OUT_OF_RANGE: 2, Quality.CLOCK_SUSPECT: 3}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def message_nudge_ns(epoch: int, seq: int) -> int:
    """Nanoseconds below the millisecond that tell messages apart: InfluxDB keeps one
    point per series and time, so a different reading sharing a sensor's millisecond (a
    clock set back) would overwrite the first. The same message always gets the same
    nudge (a copy overwrites itself); two messages share one only when their seqs and
    epochs are alike modulo 1000."""
    return (seq % 1000) * 1000 + epoch % 1000


def points_of(batch: list[Incoming]) -> tuple[list[Point], int, int]:
    """Influx points for a batch; returns (points, readings, events)."""
    points: list[Point] = []
    readings = events = 0
    for item in batch:
        msg = item.message
        nudge = message_nudge_ns(msg.epoch, msg.seq)
        if isinstance(msg, ReadingsBatch):
            for r in msg.readings:
                quantity = r.measurand()
                p = (
                    Point(quantity.value)
                    .tag("site", msg.site)
                    .tag("gateway", msg.gateway)
                    .tag("sensor", r.sensor)
                    .field("q", r.q.value)
                    .field("q_code", Q_CODE[r.q])
                    .time(r.ts_ms * 1_000_000 + nudge, WritePrecision.NS)
                )
                if r.q is Quality.CLOCK_SUSPECT:
                    p = p.field("received_ms", item.received_ms)
                if quantity is Quantity.POSITION:
                    p = p.field("lat_deg", r.lat_deg).field("lon_deg", r.lon_deg)
                    if r.speed_kmh is not None:
                        p = p.field("speed_kmh", r.speed_kmh)
                    if r.course_deg is not None:
                        p = p.field("course_deg", r.course_deg)
                    if r.sats is not None:  # the fix's quality
                        p = p.field("sats", r.sats)
                    if r.hdop is not None:
                        p = p.field("hdop", r.hdop)
                elif (value := r.value()) is not None:
                    p = p.field("value", value if isinstance(value, bool) else float(value))
                if r.fault:
                    p = p.field("fault", r.fault)
                points.append(p)
                readings += 1
        else:
            for e in msg.events:
                p = (
                    Point("event")
                    .tag("site", msg.site)
                    .tag("gateway", msg.gateway)
                    .tag("kind", e.kind)
                    .tag("source", e.source)
                    .field("state", e.state)
                    .time(e.ts_ms * 1_000_000 + nudge, WritePrecision.NS)
                )
                if e.detail:
                    p = p.field("detail", e.detail)
                if e.count is not None:
                    p = p.field("count", e.count)
                points.append(p)
                events += 1
    return points, readings, events


def flux_readings(
    bucket: str,
    start_ms: int,
    end_ms: int,
    sensor: str | None,
    site: str | None,
    gateway: str | None,
) -> str:
    """The Flux query behind :meth:`InfluxStore.readings` (pivoted: one row per reading)."""
    filters = ['r._measurement != "event"']
    for tag, value in (("sensor", sensor), ("site", site), ("gateway", gateway)):
        if value is not None:
            filters.append(f'r.{tag} == "{_flux_string(value)}"')
    return (
        f'from(bucket: "{_flux_string(bucket)}")\n'
        f"  |> range(start: time(v: {start_ms * 1_000_000}), "
        f"stop: time(v: {end_ms * 1_000_000}))\n"
        f"  |> filter(fn: (r) => {' and '.join(filters)})\n"
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> group()\n  |> sort(columns: ["_time"])'
    )


def _flux_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class InfluxStore:
    def __init__(
        self,
        *,
        url: str,
        org: str,
        bucket: str,
        token: str,
        quarantine_path: Path,
        timeout_ms: int = 10_000,
    ) -> None:
        self.url = url
        self.org = org
        self.bucket = bucket
        self._client = InfluxDBClient(
            url=url, token=token, org=org, timeout=timeout_ms, retries=False
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        # the side file: the quarantine (raw payloads are not time series) and the seq
        # watermark (the collectors' record of what they wrote, published to gateways);
        # collectors sharing a group share this file
        self.side_path = quarantine_path
        quarantine_path.parent.mkdir(parents=True, exist_ok=True)
        self._side = sqlite3.connect(
            quarantine_path, isolation_level=None, check_same_thread=False, timeout=2.0
        )
        self._side.execute("PRAGMA journal_mode=WAL")
        self._side.execute("PRAGMA synchronous=FULL")
        self._side.execute(QUARANTINE_SCHEMA)
        watermark.create(self._side)

    def write(self, batch: list[Incoming], quarantine: list[QuarantineItem]) -> WriteResult:
        points, readings, events = points_of(batch)
        if points:
            try:
                self._write_api.write(
                    bucket=self.bucket,
                    org=self.org,
                    record=points,
                    write_precision=WritePrecision.NS,  # type: ignore[arg-type]
                )
            except ApiException as exc:
                raise _classified(self.url, exc) from None
            except (HTTPError, OSError) as exc:
                raise StoreUnavailable(f"influxdb {self.url}: {_describe(exc)}") from None
        try:
            self._side.execute("BEGIN IMMEDIATE")
            copies = sum(watermark.record_message(self._side, i.message) for i in batch)
            dropped = 0
            if quarantine:
                self._side.executemany(
                    "INSERT INTO quarantine (received_ms, topic, payload, reason) "
                    "VALUES (?, ?, ?, ?)",
                    [kept_row(q) for q in quarantine],
                )
                dropped = trim(self._side, max(q.received_ms for q in quarantine))
            self._side.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self._side.in_transaction:
                self._side.execute("ROLLBACK")
            # InfluxDB has the points: the batch comes again and overwrites them
            raise StoreUnavailable(f"side file {self.side_path}: {exc}") from None
        # InfluxDB does not say whether a point replaced an identical one
        return WriteResult(readings, 0, copies, events, len(quarantine), dropped)

    def watermarks(self, outboxes: Iterable[tuple[str, int]]) -> watermark.Watermarks:
        try:
            return watermark.read(self._side, outboxes)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"side file {self.side_path}: {exc}") from None

    def readings(
        self,
        *,
        start_ms: int,
        end_ms: int,
        sensor: str | None = None,
        site: str | None = None,
        gateway: str | None = None,
    ) -> Iterator[StoredReading]:
        query = flux_readings(self.bucket, start_ms, end_ms, sensor, site, gateway)
        try:
            records = self._client.query_api().query_stream(query, org=self.org)
            for rec in records:
                values = rec.values
                yield StoredReading.restore(
                    values["site"],
                    values["gateway"],
                    values["sensor"],
                    (rec.get_time() - _EPOCH) // timedelta(milliseconds=1),
                    rec.get_measurement(),
                    values.get("value"),
                    values.get("q", "ok"),
                    values.get("fault"),
                    values.get("lat_deg"),
                    values.get("lon_deg"),
                    values.get("speed_kmh"),
                    values.get("course_deg"),
                    values.get("sats"),
                    values.get("hdop"),
                )
        except (ApiException, HTTPError, OSError) as exc:
            raise StoreUnavailable(f"influxdb {self.url}: {_describe(exc)}") from None

    def quarantined(self) -> list[tuple[str, bytes, str]]:
        return [
            (t, bytes(p), r)
            for t, p, r in self._side.execute(
                "SELECT topic, payload, reason FROM quarantine ORDER BY id"
            )
        ]

    def ping(self) -> bool:
        return bool(self._client.ping())

    def close(self) -> None:
        self._client.close()
        self._side.close()


def _classified(url: str, exc: ApiException) -> StoreUnavailable | StoreRefused:
    """Retryable (5xx, 429 with its Retry-After, no status: the network) against
    permanent (any other 4xx: the batch itself is wrong, and will be every time)."""
    status = exc.status or 0
    if status == 429 or status >= 500 or status == 0:
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        try:
            after = float(retry_after) if retry_after is not None else None
        except ValueError:
            after = None
        return StoreUnavailable(f"influxdb {url}: {_describe(exc)}", retry_after_s=after)
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body)
    return StoreRefused(f"influxdb {url}: {_describe(exc)}: {body[:500]}")


def _describe(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
