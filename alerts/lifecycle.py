"""Alarm lifecycle and escalation, as pure functions of the alarm and the clock.

Lifecycle: an alarm is raised *active*; a named user acknowledges it with a mandatory
comment; the condition *clears* when its breach ends; it is *closed* when it is both
acknowledged and cleared (in either order). Acknowledging silences escalation, never
the record.

Escalation: a policy is a list of steps (who to notify, and how many minutes after the
alarm was raised), and a repeat interval for the last step until someone acknowledges.
Quiet hours hold back warnings, never critical alarms. :func:`due_notifications` says
which notifications are due at ``now``; each has a stable key, so a durable outbox that
refuses keys it has seen sends each one once, across restarts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

from alerts.errors import Conflict, DomainError, Refused
from coldchain.judging.breach import Level

MINUTE_MS = 60_000


class LifecycleError(DomainError):
    """An operation the alarm's state does not allow, or one without what it needs."""


class IncompleteAcknowledgement(LifecycleError, Refused):
    """An acknowledgement without a named user or without a comment."""


class AlreadyAcknowledged(LifecycleError, Conflict):
    """Someone acknowledged this alarm before."""


class State(enum.StrEnum):
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"  # still active, someone is on it
    CLEARED = "cleared"  # condition over, nobody has acknowledged yet
    CLOSED = "closed"


@dataclass
class Alarm:
    id: str
    level: Level
    raised_ms: int
    state: State = State.ACTIVE
    acknowledged_by: str | None = None
    ack_comment: str | None = None
    acknowledged_ms: int | None = None
    cleared_ms: int | None = None
    closed_ms: int | None = None

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_by is not None


def acknowledge(alarm: Alarm, user: str, comment: str, now_ms: int) -> Alarm:
    if not user.strip():
        raise IncompleteAcknowledgement("an acknowledgement needs a named user")
    if not comment.strip():
        raise IncompleteAcknowledgement("an acknowledgement needs a comment: say what was done")
    if alarm.acknowledged:
        raise AlreadyAcknowledged(
            f"alarm {alarm.id} was already acknowledged by {alarm.acknowledged_by}"
        )
    alarm.acknowledged_by, alarm.ack_comment, alarm.acknowledged_ms = user, comment, now_ms
    if alarm.state is State.CLEARED:
        alarm.state, alarm.closed_ms = State.CLOSED, now_ms
    else:
        alarm.state = State.ACKNOWLEDGED
    return alarm


def clear(alarm: Alarm, now_ms: int) -> Alarm:
    if alarm.state in (State.CLEARED, State.CLOSED):
        return alarm  # clearing twice (late data) changes nothing
    alarm.cleared_ms = now_ms
    if alarm.acknowledged:
        alarm.state, alarm.closed_ms = State.CLOSED, now_ms
    else:
        alarm.state = State.CLEARED
    return alarm


@dataclass(frozen=True)
class Step:
    after_min: float
    notify: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    steps: tuple[Step, ...]
    repeat_min: float | None = 30.0
    quiet_start: time | None = None  # local time; e.g. 22:00
    quiet_end: time | None = None  # e.g. 06:00
    utc_offset_h: float = 8.0  # China Standard Time

    def quiet(self, ts_ms: int) -> bool:
        if self.quiet_start is None or self.quiet_end is None:
            return False
        zone = timezone(timedelta(hours=self.utc_offset_h))
        local = datetime.fromtimestamp(ts_ms / 1000, zone).time()
        if self.quiet_start <= self.quiet_end:
            return self.quiet_start <= local < self.quiet_end
        return local >= self.quiet_start or local < self.quiet_end


@dataclass(frozen=True)
class Notification:
    key: str
    alarm_id: str
    recipients: tuple[str, ...]
    due_ms: int


def due_notifications(
    alarm: Alarm, policy: Policy, now_ms: int, sent: set[str]
) -> list[Notification]:
    """Notifications due at ``now`` that have not been sent. Nothing once acknowledged
    or cleared; warnings wait out quiet hours; critical alarms never do."""
    if alarm.acknowledged or alarm.state is not State.ACTIVE:
        return []
    if alarm.level is Level.WARNING and policy.quiet(now_ms):
        return []
    due: list[Notification] = []
    for index, step in enumerate(policy.steps):
        at = alarm.raised_ms + int(step.after_min * MINUTE_MS)
        if at <= now_ms:
            due.append(Notification(f"{alarm.id}/step{index}", alarm.id, step.notify, at))
    if policy.repeat_min and policy.steps:
        last = policy.steps[-1]
        start = alarm.raised_ms + int(last.after_min * MINUTE_MS)
        every = int(policy.repeat_min * MINUTE_MS)
        if now_ms >= start + every:
            repeats = (now_ms - start) // every
            # only the latest repeat: a service that was down does not fire a burst
            due.append(
                Notification(
                    f"{alarm.id}/repeat{repeats}", alarm.id, last.notify, start + repeats * every
                )
            )
    return [n for n in due if n.key not in sent]
