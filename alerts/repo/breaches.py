"""Breaches, stored by identity (gateway, sensor, kind, level, start): a late
re-evaluation updates a stored breach, never duplicates it; late data that shows a
breach did not happen supersedes it (kept, audited, its alarm cleared)."""

from __future__ import annotations

import json

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from alerts.audit import now_ms, record
from alerts.lifecycle import clear
from alerts.models import AlarmRow, BreachRow, Location
from alerts.repo.alarms import alarm_of, store_alarm
from alerts.repo.custody import batches_in
from alerts.repo.sites import gateway_locations, location_of
from coldchain.judging.breach import Breach, EndReason, Kind, Level

#: the sensor name of a breach of a whole gateway (offline)
GATEWAY_WIDE = ""


def _stored(s: Session, gateway: str, breach: Breach) -> BreachRow | None:
    """The stored row with the breach's identity, if any."""
    return s.execute(
        select(BreachRow).where(
            BreachRow.gateway == gateway,
            BreachRow.sensor == breach.sensor,
            BreachRow.kind == breach.kind.value,
            BreachRow.level == breach.level.value,
            BreachRow.start_ms == breach.start_ts_ms,
        )
    ).scalar_one_or_none()


def upsert_breach(s: Session, gateway: str, breach: Breach) -> BreachRow:
    """Store a breach by its identity (a late re-evaluation updates, never duplicates),
    naming its location, its site and the batches that were there during it. A
    gateway-wide breach (``sensor`` empty: the gateway went offline) names the batches in
    every location the gateway's sensors measure."""
    if breach.sensor == GATEWAY_WIDE:
        location = None
        places = gateway_locations(s, gateway, breach.start_ts_ms, breach.end_ts_ms)
    else:
        location = location_of(s, gateway, breach.sensor, breach.start_ts_ms)
        places = [] if location is None else [location]
    batches = sorted(
        {b for p in places for b in batches_in(s, p, breach.start_ts_ms, breach.end_ts_ms)}
    )
    site = None
    if places:
        site = s.execute(select(Location.site_id).where(Location.id == places[0])).scalar()
    row = _stored(s, gateway, breach)
    if row is None:
        row = BreachRow(
            gateway=gateway,
            sensor=breach.sensor,
            kind=breach.kind.value,
            level=breach.level.value,
            start_ms=breach.start_ts_ms,
            raised_ms=breach.raised_ts_ms,
            settings=json.dumps(breach.settings, sort_keys=True),
        )
        s.add(row)
    row.end_ms, row.end_reason = breach.end_ts_ms, breach.end_reason
    row.min_value, row.max_value = breach.min_value, breach.max_value
    row.location_id, row.site_id, row.batches = location, site, json.dumps(batches)
    s.flush()
    return row


def supersede_breach(s: Session, gateway: str, breach: Breach, now: int | None = None) -> bool:
    """Late data showed a stored breach did not happen as judged (a gap that the backlog
    filled, a run that late readings split): it is kept, ended with reason
    ``superseded``, and its alarm cleared. Returns True if a stored breach changed."""
    row = _stored(s, gateway, breach)
    if row is None or row.end_reason == EndReason.SUPERSEDED:
        return False
    row.end_reason = EndReason.SUPERSEDED
    if row.end_ms is None:
        row.end_ms = row.start_ms
    alarm = s.execute(select(AlarmRow).where(AlarmRow.breach_id == row.id)).scalar()
    if alarm is not None and alarm.cleared_ms is None:
        store_alarm(alarm, clear(alarm_of(alarm), now_ms() if now is None else now))
    record(
        s,
        actor="alerts.service",
        action="breach.supersede",
        entity="breach",
        entity_id=str(row.id),
        old={"end_ms": breach.end_ts_ms},
        new={"end_reason": EndReason.SUPERSEDED.value},
        reason="late readings re-evaluated: the breach is not in the complete record",
    )
    return True


def breach_of(row: BreachRow) -> Breach:
    return Breach(
        row.sensor,
        Kind(row.kind),
        Level(row.level),
        row.start_ms,
        row.raised_ms,
        row.end_ms,
        None if row.end_reason is None else EndReason(row.end_reason),
        row.min_value,
        row.max_value,
        json.loads(row.settings),
    )


def stored_breaches(s: Session, gateway: str, sensor: str, since_ms: int) -> list[Breach]:
    """A sensor's stored breaches that started at or after ``since_ms`` (not superseded)."""
    rows = s.execute(
        select(BreachRow).where(
            BreachRow.gateway == gateway,
            BreachRow.sensor == sensor,
            BreachRow.start_ms >= since_ms,
            or_(BreachRow.end_reason.is_(None), BreachRow.end_reason != EndReason.SUPERSEDED.value),
        )
    ).scalars()
    return [breach_of(row) for row in rows]


def open_breaches(s: Session, gateway: str, sensor: str) -> list[Breach]:
    """A sensor's breaches still in progress (a restarted service takes them over)."""
    rows = s.execute(
        select(BreachRow).where(
            BreachRow.gateway == gateway,
            BreachRow.sensor == sensor,
            BreachRow.end_ms.is_(None),
        )
    ).scalars()
    return [breach_of(row) for row in rows]


def open_breach(
    s: Session, gateway: str, sensor: str, kind: Kind, level: Level
) -> BreachRow | None:
    """The ongoing breach of that kind and level, if any (a restarted service adopts it)."""
    row = s.execute(
        select(BreachRow)
        .where(
            BreachRow.gateway == gateway,
            BreachRow.sensor == sensor,
            BreachRow.kind == kind.value,
            BreachRow.level == level.value,
            BreachRow.end_ms.is_(None),
        )
        .order_by(BreachRow.start_ms.desc())
        .limit(1)
    ).scalar_one_or_none()
    return row
