"""A batch's audit report over its whole journey: what quality staff file and buyers read.

For each stay (custody from one handover to the next): the location's temperature
sensors, the calibration in force for each (readings stay raw in the store; the
correction at each reading's time is applied here), whether a sensor was overdue for
calibration while it measured the batch (the report flags such data), the readings of
the stay's primary sensor, gaps; then the breaches of those locations during the stays
with their alarms (who acknowledged, the comment), and the verdict (MKT, time out of
range, 2 h / 4 h disposition) over the corrected journey. ``data_sha256`` is a hash of
the readings the verdict used, so a filed report can be checked against the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session

from alerts.calibration import CalibrationInForce, calibrations_by_sensor, corrected, in_force
from alerts.errors import NotFound
from alerts.models import AlarmRow, Batch, BreachRow, Location, SensorAssignment, Stay
from alerts.profiles import ProductProfile
from alerts.repo import breach_of, load_profile
from alerts.verdict import Verdict, judge
from alerts.wording import disposition_text, local_time, rounded
from coldchain.judging.breach import Breach, EndReason, Point
from coldchain.wire import Quality, Quantity
from collector.store import Store

TEMPERATURE_ROLES = ("product", "air")  # a product probe, where there is one, comes first


@dataclass(frozen=True)
class SensorUse:
    gateway: str
    sensor: str
    role: str
    #: the calibration in force when the stay began
    calibration: CalibrationInForce
    #: overdue for calibration at some moment of the stay: its data is flagged
    overdue: bool
    primary: bool


@dataclass
class StayReport:
    location_id: str
    location_name: str
    from_ms: int
    until_ms: int | None
    event: str
    handed_over_by: str
    temp_at_handover_c: float | None
    sensors: list[SensorUse] = field(default_factory=list)
    #: the primary sensor's corrected readings during the stay (None = fault)
    points: list[Point] = field(default_factory=list)
    #: the place's name in Chinese, where it has one
    location_name_zh: str | None = None


@dataclass(frozen=True)
class BreachReport:
    id: int
    location_id: str | None
    gateway: str
    #: kind, level, start, end, min, max and the settings snapshot
    breach: Breach
    alarm_state: str | None
    acknowledged_by: str | None
    ack_comment: str | None
    acknowledged_ms: int | None


@dataclass
class BatchReport:
    batch_id: str
    product: str
    quantity: float
    unit: str
    origin_producer: str
    origin_village: str | None
    origin_county: str | None
    trace_code: str
    profile: ProductProfile
    stays: list[StayReport]
    breaches: list[BreachReport]
    verdict: Verdict
    flags: list[str]
    data_sha256: str
    generated_ms: int


def batch_report(
    engine: Engine, store: Store, batch_id: str, now_ms: int, max_gap_ms: int = 30 * 60_000
) -> BatchReport:
    with Session(engine) as s:
        batch = s.get(Batch, batch_id)
        if batch is None:
            raise NotFound(f"no batch {batch_id!r}")
        profile = load_profile(s, batch.profile_id, now_ms)
        stays = journey(s, batch)
        places = list(s.execute(select(Location)).scalars())
        names = {loc.id: loc.name for loc in places}
        names_zh = {loc.id: loc.name_zh for loc in places}
        assignments = list(s.execute(select(SensorAssignment)).scalars())
        found = _breaches(s, stays, now_ms)
        info = (
            batch.product,
            batch.quantity,
            batch.unit,
            batch.origin_producer,
            batch.origin_village,
            batch.origin_county,
            batch.trace_code,
        )
        calibrations = calibrations_by_sensor(s)
    reports: list[StayReport] = []
    flags: list[str] = []
    digest = hashlib.sha256()
    for stay in stays:
        until = stay.until_ms if stay.until_ms is not None else now_ms
        report = StayReport(
            stay.location_id,
            names.get(stay.location_id, stay.location_id),
            stay.from_ms,
            stay.until_ms,
            stay.event,
            stay.handed_over_by,
            stay.temp_at_handover_c,
            location_name_zh=names_zh.get(stay.location_id),
        )
        used = [
            a
            for a in assignments
            if a.location_id == stay.location_id
            and a.role in TEMPERATURE_ROLES
            and a.from_ms < until
            and (a.until_ms is None or a.until_ms > stay.from_ms)
        ]
        used.sort(key=lambda a: (TEMPERATURE_ROLES.index(a.role), a.gateway, a.sensor))
        for i, a in enumerate(used):
            cals = calibrations.get((a.gateway, a.sensor), [])
            at_start = in_force(cals, stay.from_ms)
            overdue = at_start.overdue or in_force(cals, until).overdue
            report.sensors.append(SensorUse(a.gateway, a.sensor, a.role, at_start, overdue, i == 0))
            if overdue:
                flags.append(
                    f"{a.gateway}/{a.sensor} in {report.location_name} was not within a valid "
                    f"calibration during the stay from {_iso(stay.from_ms)}: its data is flagged"
                )
        if used:
            primary = used[0]
            cals = calibrations.get((primary.gateway, primary.sensor), [])
            for r in store.readings(
                start_ms=stay.from_ms, end_ms=until, sensor=primary.sensor, gateway=primary.gateway
            ):
                if r.quantity is not Quantity.TEMP_C:
                    continue
                value = None
                if r.q is not Quality.FAULT and isinstance(r.value, float | int):
                    value = corrected(cals, r.ts_ms, float(r.value))
                report.points.append(Point(r.ts_ms, value))
                digest.update(f"{primary.gateway}/{primary.sensor}|{r.ts_ms}|{r.value}\n".encode())
        else:
            flags.append(f"no temperature sensor measured {report.location_name} during the stay")
        reports.append(report)
    history = [p for stay_report in reports for p in stay_report.points]
    verdict = judge(
        history,
        [b.breach for b in found if b.breach.end_reason is not EndReason.SUPERSEDED],
        profile,
        max_gap_ms,
    )
    return BatchReport(
        batch_id,
        *info,
        profile=profile,
        stays=reports,
        breaches=found,
        verdict=verdict,
        flags=flags,
        data_sha256=digest.hexdigest(),
        generated_ms=now_ms,
    )


@dataclass(frozen=True)
class Leg:
    """One stay of a batch's journey, as the report reads it."""

    location_id: str
    from_ms: int
    until_ms: int | None
    event: str
    handed_over_by: str
    temp_at_handover_c: float | None


#: a split of a split of a split …: the journey is followed back this far at most
MAX_SPLITS = 20


def journey(s: Session, batch: Batch, before_ms: int | None = None, depth: int = 0) -> list[Leg]:
    """The batch's stays, oldest first. A batch split off another begins with the
    parent's journey up to the split: the product was there before it had its own id."""
    rows = s.execute(select(Stay).where(Stay.batch_id == batch.id).order_by(Stay.from_ms))
    legs = [
        Leg(
            st.location_id,
            st.from_ms,
            st.until_ms,
            st.event,
            st.handed_over_by,
            st.temp_at_handover_c,
        )
        for st in rows.scalars()
    ]
    if before_ms is not None:  # the parent's, up to the split
        legs = [
            dataclasses.replace(leg, until_ms=min(leg.until_ms or before_ms, before_ms))
            for leg in legs
            if leg.from_ms < before_ms
        ]
    parent = s.get(Batch, batch.split_from) if batch.split_from else None
    if parent is not None and legs and depth < MAX_SPLITS:
        legs = journey(s, parent, legs[0].from_ms, depth + 1) + legs
    return legs


def _breaches(s: Session, stays: list[Leg], now_ms: int) -> list[BreachReport]:
    """Breaches of the stays' locations that overlap the stays, with their alarms."""
    out: dict[int, BreachReport] = {}
    for stay in stays:
        until = stay.until_ms if stay.until_ms is not None else now_ms
        rows = s.execute(
            select(BreachRow, AlarmRow)
            .outerjoin(AlarmRow, AlarmRow.breach_id == BreachRow.id)
            .where(
                BreachRow.location_id == stay.location_id,
                BreachRow.start_ms < until,
                or_(BreachRow.end_ms.is_(None), BreachRow.end_ms > stay.from_ms),
            )
        ).all()
        for breach, alarm in rows:
            out[breach.id] = BreachReport(
                breach.id,
                breach.location_id,
                breach.gateway,
                breach_of(breach),
                alarm.state if alarm else None,
                alarm.acknowledged_by if alarm else None,
                alarm.ack_comment if alarm else None,
                alarm.acknowledged_ms if alarm else None,
            )
    return sorted(out.values(), key=lambda b: (b.breach.start_ts_ms, b.id))


def _iso(ts_ms: int) -> str:
    """As the county reads it: its zone, the date, the offset."""
    return local_time(ts_ms)


def as_dict(report: BatchReport) -> dict[str, object]:
    """The report as plain data (JSON: ``json.dumps(as_dict(r), default=str)``)."""
    return dataclasses.asdict(report)


def render_text(report: BatchReport) -> str:
    """The report for a terminal or a plain-text file."""
    v = report.verdict
    origin = ", ".join(
        x for x in (report.origin_producer, report.origin_village, report.origin_county) if x
    )
    lines = [
        f"Batch {report.batch_id}: {report.product}, {report.quantity:g} {report.unit}",
        f"  origin      {origin}",
        f"  trace code  {report.trace_code}",
        f"  profile     {report.profile.name} ({report.profile.id})",
        "",
        "Journey",
    ]
    for stay in report.stays:
        until = _iso(stay.until_ms) if stay.until_ms is not None else "now"
        handover = (
            f"{stay.temp_at_handover_c:.1f} °C" if stay.temp_at_handover_c is not None else "-"
        )
        lines.append(
            f"  {_iso(stay.from_ms)} → {until}  {stay.location_name}  ({stay.event} by "
            f"{stay.handed_over_by}, {handover} at handover; {len(stay.points)} readings)"
        )
        for use in stay.sensors:
            cal = use.calibration
            applied = (
                f"calibration #{cal.calibration_id} ({cal.certificate or 'no certificate'}), "
                f"correction {cal.correction_c:+.2f} °C"
                if cal.calibration_id is not None
                else "never calibrated"
            )
            lines.append(
                f"      {'*' if use.primary else ' '} {use.gateway}/{use.sensor} [{use.role}]: "
                f"{applied}{'  OVERDUE' if use.overdue else ''}"
            )
    lines += ["", "Breaches"]
    if not report.breaches:
        lines.append("  none")
    for b in report.breaches:
        br = b.breach
        end = _iso(br.end_ts_ms) if br.end_ts_ms is not None else "ongoing"
        ack = (
            f"; acknowledged by {b.acknowledged_by}: {b.ack_comment!r}" if b.acknowledged_by else ""
        )
        lines.append(
            f"  #{b.id} {br.level.value} {br.kind.value} {b.location_id or b.gateway} "
            f"{_iso(br.start_ts_ms)} → {end} (min {rounded(br.min_value) or '-'}, "
            f"max {rounded(br.max_value) or '-'}; "
            f"{br.end_reason or 'open'}){ack}"
        )
    lines += [
        "",
        f"Verdict: {v.outcome.value.upper()}",
        *[f"  - {reason}" for reason in v.reasons],
        f"  MKT {v.mkt_c} °C" if v.mkt_c is not None else "  MKT -",
        *[
            f"  out of range ({level.value}): {ms / 60_000:.0f} min"
            for level, ms in v.out_of_range_ms.items()
        ],
    ]
    if v.disposition is not None and v.danger_ms is not None:
        lines.append(
            f"  5-60 °C for {v.danger_ms / 60_000:.0f} min: "
            f"{disposition_text(v.disposition.value, 'en')} (2 h / 4 h rule)"
        )
    if report.flags:
        lines += ["", "Flags", *[f"  ! {flag}" for flag in report.flags]]
    lines += [
        "",
        f"generated {_iso(report.generated_ms)}; data sha256 {report.data_sha256}",
        "temperatures are corrected by the calibration in force at each reading's time",
    ]
    return "\n".join(lines)
