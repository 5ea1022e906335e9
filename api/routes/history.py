"""A sensor's history for the charts: readings or buckets of a range, calibrated, with
its gaps, the limits in force and its excursions; the CSV of a range
(docs/design-history.md)."""

from __future__ import annotations

import csv
import io
import itertools
import statistics
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from alerts.calibration import corrected
from alerts.db import reading
from alerts.models import BreachRow, Calibration, Location, SensorAssignment
from alerts.repo import profiles_in_force
from api.deps import Operator, ServicesDep, StoreDep, open_readings
from api.routes.sites import sensor_in_scope
from api.schemas import Model
from collector.buckets import Bucket, aggregate, bucket_width, combined
from collector.sqlite_store import SqliteStore
from collector.store import Store

router = APIRouter(prefix="/api", tags=["history"])

DAY_MS = 86_400_000
#: the longest range a chart or a CSV may ask for (EN 12830: a year of records, and some)
MAX_SPAN_MS = 400 * DAY_MS
MAX_POINTS = 5000
#: raw readings further apart than this many times their usual spacing are a gap
GAP_FACTOR = 3

Sensor = Annotated[str, Query(min_length=1, max_length=128)]
Gateway = Annotated[str, Query(min_length=1, max_length=64)]
Ms = Annotated[int | None, Query(ge=0, le=2**53)]
#: one row: start (or time), min, mean, max, count; a row of nulls is a gap
Row = tuple[int, float | None, float | None, float | None, int]


class LimitsOut(Model):
    profile: str
    warning_low_c: float | None = None
    warning_high_c: float | None = None
    critical_low_c: float | None = None
    critical_high_c: float | None = None


class ExcursionOut(Model):
    kind: str
    level: str
    start_ms: int
    end_ms: int | None


class SeriesOut(Model):
    gateway: str
    sensor: str
    from_ms: int
    to_ms: int
    #: 0: each reading; else the width of the buckets
    bucket_ms: int
    rows: list[Row]
    #: corrected by the calibration in force at each reading's time
    calibrated: bool
    #: part of the range is past the store's keep_raw_days: drawn from its 1-minute
    #: roll-ups (min, mean, max, count); its readings are gone (the CSV gives a row a
    #: minute, ``q`` = ``rollup_1m``)
    rollups_only: bool = False
    location: str | None = None
    limits: LimitsOut | None = None
    excursions: list[ExcursionOut]


def span(from_ms: int | None, to_ms: int | None) -> tuple[int, int]:
    end = to_ms if to_ms is not None else time.time_ns() // 1_000_000 + 1
    start = from_ms if from_ms is not None else end - DAY_MS
    if end <= start or end - start > MAX_SPAN_MS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"a range is from_ms < to_ms, at most {MAX_SPAN_MS // DAY_MS} days",
        )
    return start, end


@router.get("/series", responses={404: {"description": "no such sensor at your sites"}})
def series(
    user: Operator,
    svc: ServicesDep,
    store: StoreDep,
    gateway: Gateway,
    sensor: Sensor,
    from_ms: Ms = None,
    to_ms: Ms = None,
    points: Annotated[int, Query(ge=10, le=MAX_POINTS)] = 600,
) -> SeriesOut:
    """A sensor's range for a chart: its readings when there are at most ``points``,
    else buckets of a round width with min, mean and max (an excursion shorter than a
    bucket still shows at its height); calibrated; gaps as rows of nulls; the limits of
    the profile in force where it measures, and its excursions in the range."""
    sensor_in_scope(svc, user, gateway, sensor)
    start, end = span(from_ms, to_ms)
    with reading(svc.engine) as s:
        cals = _calibrations(s, gateway, sensor)
        location, limits = _limits(s, gateway, sensor, end)
        excursions = _excursions(s, gateway, sensor, start, end)
    # past keep_raw_days part of the range is its roll-ups only: buckets, whatever the count
    gone = isinstance(store, SqliteStore) and store.raw_gone(gateway, sensor, start, end)
    width, rows = _rows(store, gateway, sensor, start, end, points, cals, gone)
    return SeriesOut(
        gateway=gateway,
        sensor=sensor,
        from_ms=start,
        to_ms=end,
        bucket_ms=width,
        rows=rows,
        calibrated=bool(cals),
        rollups_only=gone,
        location=location,
        limits=limits,
        excursions=excursions,
    )


def _rows(
    store: Store,
    gateway: str,
    sensor: str,
    start: int,
    end: int,
    points: int,
    cals: list[Calibration],
    gone: bool,
) -> tuple[int, list[Row]]:
    if isinstance(store, SqliteStore) and (
        gone or store.count(gateway, sensor, start, end) > points
    ):
        width = bucket_width(end - start, points)
        origin = start - start % width  # round starts (whole hours: the store's roll-ups)
        parts = (  # exact across a recalibration: each period with its own correction
            b.shifted(offset)
            for lo, hi, offset in _periods(cals, start, end)
            for b in store.buckets(gateway, sensor, lo, hi, width, origin_ms=origin)
        )
        return width, _bucket_rows(combined(parts), width)
    scan = iter(store.readings(start_ms=start, end_ms=end, sensor=sensor, gateway=gateway))
    readings = list(itertools.islice(scan, points + 1))
    if len(readings) > points:  # another store: aggregated here, in the same one scan
        width = bucket_width(end - start, points)
        every = aggregate(itertools.chain(readings, scan), start, width)
        return width, _bucket_rows([b.shifted(_correction(cals, b.start_ms)) for b in every], width)
    raw: list[Row] = []
    for r in readings:
        drawn = r.q.value in ("ok", "clock_suspect") and isinstance(r.value, (int, float))
        v = corrected(cals, r.ts_ms, float(r.value)) if drawn else None  # type: ignore[arg-type]
        raw.append((r.ts_ms, v, v, v, 1 if drawn else 0))
    return 0, _with_gaps(raw)


def _bucket_rows(buckets: list[Bucket], width: int) -> list[Row]:
    rows: list[Row] = []
    for b in buckets:
        if rows and b.start_ms - rows[-1][0] > width:
            rows.append((rows[-1][0] + width, None, None, None, 0))  # an empty bucket
        rows.append((b.start_ms, _r(b.min), _r(b.mean), _r(b.max), b.n))
    return rows


def _with_gaps(raw: list[Row]) -> list[Row]:
    """Readings further apart than GAP_FACTOR times their usual spacing (and at least a
    minute) get a row of nulls between them: the line breaks there."""
    if len(raw) < 2:
        return raw
    usual = statistics.median(b[0] - a[0] for a, b in itertools.pairwise(raw))
    limit = max(GAP_FACTOR * usual, 60_000)
    rows = [raw[0]]
    for row in raw[1:]:
        if row[0] - rows[-1][0] > limit:
            rows.append((rows[-1][0] + 1, None, None, None, 0))
        rows.append(row)
    return rows


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _calibrations(s: Session, gateway: str, sensor: str) -> list[Calibration]:
    query = select(Calibration).where(Calibration.gateway == gateway, Calibration.sensor == sensor)
    return list(s.execute(query.order_by(Calibration.calibrated_ms)).scalars())


def _correction(cals: list[Calibration], at_ms: int) -> float:
    return corrected(cals, at_ms, 0.0)


def _periods(cals: list[Calibration], start: int, end: int) -> Iterator[tuple[int, int, float]]:
    """(from, to, correction) of each calibration period within the range."""
    edges = [start, *(c.calibrated_ms for c in cals if start < c.calibrated_ms < end), end]
    for lo, hi in itertools.pairwise(edges):
        yield lo, hi, _correction(cals, lo)


def _limits(
    s: Session, gateway: str, sensor: str, at_ms: int
) -> tuple[str | None, LimitsOut | None]:
    """Where the sensor measures at ``at_ms`` (or last measured) and its profile's limits."""
    query = (
        select(Location)
        .join(SensorAssignment, SensorAssignment.location_id == Location.id)
        .where(SensorAssignment.gateway == gateway, SensorAssignment.sensor == sensor)
        .where(SensorAssignment.from_ms < at_ms)
        .order_by(SensorAssignment.from_ms.desc())
    )
    location = s.execute(query.limit(1)).scalars().first()
    if location is None:
        return None, None
    profile = profiles_in_force(s).get(location.profile_id or "")
    if profile is None:
        return location.id, None
    w, c = profile.warning, profile.critical
    return location.id, LimitsOut(
        profile=profile.id,
        warning_low_c=w.low_c,
        warning_high_c=w.high_c,
        critical_low_c=c.low_c,
        critical_high_c=c.high_c,
    )


def _excursions(s: Session, gateway: str, sensor: str, start: int, end: int) -> list[ExcursionOut]:
    query = select(BreachRow).where(
        BreachRow.gateway == gateway,
        BreachRow.sensor == sensor,
        BreachRow.start_ms < end,
        or_(BreachRow.end_ms.is_(None), BreachRow.end_ms > start),
        BreachRow.end_reason.is_distinct_from("superseded"),
    )
    return [
        ExcursionOut(kind=b.kind, level=b.level, start_ms=b.start_ms, end_ms=b.end_ms)
        for b in s.execute(query.order_by(BreachRow.start_ms)).scalars()
    ]


@router.get(
    "/series.csv",
    responses={200: {"content": {"text/csv": {}}}, 404: {"description": "no such sensor"}},
    response_class=StreamingResponse,
)
def series_csv(
    user: Operator,
    svc: ServicesDep,
    gateway: Gateway,
    sensor: Sensor,
    from_ms: Ms = None,
    to_ms: Ms = None,
) -> StreamingResponse:
    """Every reading of the range shown on a chart, raw and calibrated, streamed."""
    sensor_in_scope(svc, user, gateway, sensor)
    start, end = span(from_ms, to_ms)
    with reading(svc.engine) as s:
        cals = _calibrations(s, gateway, sensor)
    name = f"{gateway}_{sensor}_{start}_{end}.csv".replace("/", "_")
    return StreamingResponse(
        _csv_lines(open_readings(svc), gateway, sensor, start, end, cals),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _csv_lines(
    store: Store, gateway: str, sensor: str, start: int, end: int, cals: list[Calibration]
) -> Iterator[str]:
    """The CSV in pieces; it closes the store (its own, not the request's: the answer
    streams after the route has returned). Days past the store's keep_raw_days come
    first, a row a minute from their roll-ups (``q`` = ``rollup_1m``: the value is the
    minute's mean; its min, max and count of readings beside)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["gateway", "sensor", "ts_ms", "time_utc", "quantity", "value", "value_calibrated",
         "q", "fault", "min", "max", "count"]
    )  # fmt: skip
    try:
        rows = itertools.chain(
            _rollup_rows(store, gateway, sensor, start, end, cals),
            _reading_rows(store, gateway, sensor, start, end, cals),
        )
        for row in rows:
            writer.writerow(row)
            if out.tell() > 64_000:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()
    finally:
        store.close()


CsvRow = list[object]


def _rollup_rows(
    store: Store, gateway: str, sensor: str, start: int, end: int, cals: list[Calibration]
) -> Iterator[CsvRow]:
    if not isinstance(store, SqliteStore):
        return
    quantity, minutes = store.rolled_up(gateway, sensor, start, end)
    for m in minutes:
        mean = None if not m.n or m.total is None else m.total / m.n
        yield [
            gateway, sensor, m.minute_ms, _utc(m.minute_ms), quantity,
            "" if mean is None else mean,
            "" if mean is None else corrected(cals, m.minute_ms, mean),
            "rollup_1m",
            f"{m.bad} without a value" if m.bad else "",
            "" if m.lo is None else m.lo,
            "" if m.hi is None else m.hi,
            m.n,
        ]  # fmt: skip


def _reading_rows(
    store: Store, gateway: str, sensor: str, start: int, end: int, cals: list[Calibration]
) -> Iterator[CsvRow]:
    for r in store.readings(start_ms=start, end_ms=end, sensor=sensor, gateway=gateway):
        number = isinstance(r.value, (int, float)) and not isinstance(r.value, bool)
        yield [
            r.gateway, r.sensor, r.ts_ms, _utc(r.ts_ms), r.quantity.value,
            "" if r.value is None else r.value,
            corrected(cals, r.ts_ms, float(r.value)) if number else "",  # type: ignore[arg-type]
            r.q.value, r.fault or "", "", "", "",
        ]  # fmt: skip


def _utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts_ms / 1000))
