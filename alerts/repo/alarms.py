"""Alarms: one per breach, raised once, cleared when the breach ends, acknowledged by a
named user with a comment, assigned to someone; every change audited in the caller's
transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.audit import now_ms, record
from alerts.errors import NotFound
from alerts.lifecycle import Alarm, State, acknowledge, clear
from alerts.models import AlarmRow, BreachRow
from coldchain.judging.breach import Level


def alarm_of(row: AlarmRow) -> Alarm:
    return Alarm(
        id=str(row.id),
        level=Level(row.level),
        raised_ms=row.raised_ms,
        state=State(row.state),
        acknowledged_by=row.acknowledged_by,
        ack_comment=row.ack_comment,
        acknowledged_ms=row.acknowledged_ms,
        cleared_ms=row.cleared_ms,
        closed_ms=row.closed_ms,
    )


def store_alarm(row: AlarmRow, alarm: Alarm) -> None:
    row.state, row.acknowledged_by, row.ack_comment = (
        alarm.state.value,
        alarm.acknowledged_by,
        alarm.ack_comment,
    )
    row.acknowledged_ms, row.cleared_ms, row.closed_ms = (
        alarm.acknowledged_ms,
        alarm.cleared_ms,
        alarm.closed_ms,
    )


def sync_alarm(s: Session, breach: BreachRow, now: int | None = None) -> tuple[AlarmRow, bool]:
    """The alarm of a stored breach: raised once (returns True the first time), cleared
    when the breach has ended."""
    current = now_ms() if now is None else now
    row = s.execute(select(AlarmRow).where(AlarmRow.breach_id == breach.id)).scalar_one_or_none()
    created = row is None
    if row is None:
        row = AlarmRow(
            breach_id=breach.id,
            level=breach.level,
            state=State.ACTIVE.value,
            raised_ms=breach.raised_ms,
            over_when_known=breach.end_ms is not None,
        )
        s.add(row)
    if breach.end_ms is not None:
        alarm = clear(alarm_of(row), current)
        store_alarm(row, alarm)
    s.flush()
    return row, created


def acknowledge_alarm(
    s: Session, alarm_id: int, *, user: str, comment: str, now: int | None = None
) -> AlarmRow:
    """A named user acknowledges with a comment (refused without one); audited."""
    current = now_ms() if now is None else now
    row = s.get(AlarmRow, alarm_id)
    if row is None:
        raise NotFound(f"no alarm {alarm_id}")
    before = row.state
    alarm = acknowledge(alarm_of(row), user, comment, current)
    store_alarm(row, alarm)
    record(
        s,
        actor=user,
        action="alarm.acknowledge",
        entity="alarm",
        entity_id=str(alarm_id),
        old={"state": before},
        new={"state": alarm.state.value, "comment": comment},
        ts_ms=current,
    )
    s.flush()
    return row


def assign_alarm(
    s: Session, alarm_id: int, *, assignee: str | None, actor: str, now: int | None = None
) -> AlarmRow:
    """Give an alarm to someone to deal with (or take it back); audited."""
    row = s.get(AlarmRow, alarm_id)
    if row is None:
        raise NotFound(f"no alarm {alarm_id}")
    old = row.assigned_to
    row.assigned_to = assignee
    record(
        s,
        actor=actor,
        action="alarm.assign",
        entity="alarm",
        entity_id=str(alarm_id),
        old={"assigned_to": old},
        new={"assigned_to": assignee},
        ts_ms=now,
    )
    s.flush()
    return row
