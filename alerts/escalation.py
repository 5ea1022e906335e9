"""The escalation loop: open alarms + policy + clock -> notifications in the outbox.

:func:`escalate` is run on a tick by the alert service. For every alarm that is still
active and unacknowledged it asks :func:`alerts.lifecycle.due_notifications` what is due
now, and enqueues one outbox row per recipient route. The outbox key is the notification
key plus the route, so a tick repeated after a restart enqueues nothing twice, and
:func:`alerts.notify.deliver_due` sends each row once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, and_, or_, select
from sqlalchemy.orm import Session

from alerts.calibration import calibrations_due
from alerts.lifecycle import Alarm, Policy, State, due_notifications
from alerts.links import Links
from alerts.models import AlarmRow, BreachRow, Location, SensorAssignment, Site
from alerts.notify import Channel, Message, NotificationRow, enqueue
from alerts.repo import alarm_of
from alerts.wording import DEFAULT_TZ, AlarmFacts, Lang
from coldchain.judging.breach import Level


@dataclass(frozen=True)
class Route:
    """Where a recipient named in a policy step is reached, in their language."""

    channel: str  # a configured channel name: webhook, email, apprise, sms, voice …
    address: str  # e-mail address, chat room, phone …
    lang: Lang = "zh"
    #: the alarm levels it is used for (a voice call: critical only)
    levels: tuple[str, ...] = ("warning", "critical")


#: the message for one route of one recipient (its language, its own link)
Compose = Callable[[Route, str], Message]


def _enqueue(
    engine: Engine,
    key: str,
    recipients: tuple[str, ...],
    routes: dict[str, tuple[Route, ...]],
    compose: Compose,
    due_ms: int,
) -> int:
    """One outbox row per route of each recipient, keyed ``key|recipient|channel:address`` so
    that a repeated tick queues nothing twice; returns the rows added."""
    added = 0
    for recipient in recipients:
        for route in routes.get(recipient, ()):
            message = compose(route, recipient)
            if message.severity in ("warning", "critical") and message.severity not in route.levels:
                continue  # e.g. a voice call is for critical alarms only
            added += enqueue(
                engine,
                key=f"{key}|{recipient}|{route.channel}:{route.address}",
                channel=route.channel,
                recipients=(route.address,),
                message=message,
                due_ms=due_ms,
            )
    return added


def _same(message: Message) -> Compose:
    """One message for every route (a calibration reminder)."""
    return lambda _route, _recipient: message


def _alarm_messages(
    alarm_id: int, facts: AlarmFacts, links: Links | None, now_ms: int, over_ms: int | None
) -> Compose:
    def compose(route: Route, recipient: str) -> Message:
        link = None if links is None else links.for_alarm(alarm_id, recipient, now_ms)
        body = facts.body(route.lang, link)
        subject = facts.subject(route.lang)
        if over_ms is not None:  # it happened while monitoring was down
            body = f"{facts.over_note(over_ms, route.lang)} {body}"
            subject = facts.over_subject(route.lang)
        return Message(
            subject=subject,
            body=body,
            severity=facts.level,
            alarm_id=str(alarm_id),
            fields=facts.fields(route.lang, alarm_id, link),
        )

    return compose


def escalate(
    engine: Engine,
    policy: Policy,
    routes: dict[str, tuple[Route, ...]],
    now_ms: int,
    site_policies: Mapping[str, Policy] | None = None,
    links: Links | None = None,
) -> int:
    """Enqueue what is due now; returns the number of outbox rows added. An alarm follows
    its site's policy when ``site_policies`` has one, else ``policy``. Each message is in
    its route's language, its times in the site's zone; with ``links``, it carries a
    signed link to the alarm for its recipient."""
    by_site = site_policies or {}
    added = 0
    with Session(engine) as s:
        open_alarms = list(
            s.execute(
                select(AlarmRow, BreachRow, Location, Site.timezone)
                .join(BreachRow, AlarmRow.breach_id == BreachRow.id)
                .outerjoin(Location, BreachRow.location_id == Location.id)
                .outerjoin(Site, BreachRow.site_id == Site.id)
                .where(
                    or_(
                        AlarmRow.state == "active",
                        and_(AlarmRow.state == "cleared", AlarmRow.over_when_known),
                    )
                )
            ).all()
        )
        # only the open alarms' notifications: the table keeps every one ever sent
        open_ids = [str(alarm.id) for alarm, _breach, _location, _tz in open_alarms]
        keys = s.execute(
            select(NotificationRow.key).where(NotificationRow.alarm_id.in_(open_ids))
        ).scalars()
        queued = {key.split("|", 1)[0] for key in keys}
    for alarm_row, breach, location, tz in open_alarms:
        alarm = alarm_of(alarm_row)
        place = (
            location.name if location is not None else breach.sensor or f"gateway {breach.gateway}"
        )
        place_zh = location.name_zh if location is not None else None
        facts = AlarmFacts.of(place, breach, tz or DEFAULT_TZ, place_zh)
        site_policy = by_site.get(breach.site_id or "", policy)
        if alarm.state is State.CLEARED:
            over = _alarm_messages(alarm_row.id, facts, links, now_ms, breach.end_ms or now_ms)
            added += _enqueue_over(engine, alarm, over, site_policy, routes, now_ms, queued)
            continue
        compose = _alarm_messages(alarm_row.id, facts, links, now_ms, None)
        for note in due_notifications(alarm, site_policy, now_ms, queued):
            added += _enqueue(engine, note.key, note.recipients, routes, compose, note.due_ms)
            queued.add(note.key)
    return added


def _enqueue_over(
    engine: Engine,
    alarm: Alarm,
    compose: Compose,
    policy: Policy,
    routes: dict[str, tuple[Route, ...]],
    now_ms: int,
    queued: set[str],
) -> int:
    """An excursion that was over when it became known (it happened while the broker or
    the service was down) is told once, by its level, to the first step; it stays on the
    board until someone acknowledges it."""
    key = f"{alarm.id}/over"
    if key in queued or not policy.steps:
        return 0
    if alarm.level is Level.WARNING and policy.quiet(now_ms):
        return 0
    queued.add(key)
    return _enqueue(engine, key, policy.steps[0].notify, routes, compose, now_ms)


def remind_calibrations(
    engine: Engine,
    policy: Policy,
    routes: dict[str, tuple[Route, ...]],
    now_ms: int,
    site_policies: Mapping[str, Policy] | None = None,
    within_ms: int = 14 * 86_400_000,
) -> int:
    """GB 31605: a calibration coming due (or overdue) is a reminder to the first step of
    the sensor's site policy, once per due date (the key carries it)."""
    by_site = site_policies or {}
    with Session(engine) as s:
        sites = {
            (a.gateway, a.sensor): site
            for a, site in s.execute(
                select(SensorAssignment, Location.site_id)
                .join(Location, SensorAssignment.location_id == Location.id)
                .where(SensorAssignment.until_ms.is_(None))
            ).all()
        }
        due = calibrations_due(s, now_ms, within_ms)
    added = 0
    for gateway, sensor, due_ms in due:
        site = sites.get((gateway, sensor), "")
        day = datetime.fromtimestamp(due_ms / 1000, UTC).date().isoformat()
        state = "is overdue since" if due_ms <= now_ms else "is due on"
        message = Message(
            subject=f"CALIBRATION {gateway}/{sensor} {state} {day}",
            body=(
                f"Sensor {gateway}/{sensor} ({site or 'unassigned'}) {state} {day} (UTC). "
                f"Calibrate it against a reference instrument and record the certificate; "
                f"reports flag its data while it is overdue."
            ),
            severity="warning",
            alarm_id=f"calibration:{gateway}/{sensor}",
        )
        key = f"calibration|{gateway}/{sensor}|{due_ms}"
        recipients = by_site.get(site, policy).steps[0].notify
        added += _enqueue(engine, key, recipients, routes, _same(message), now_ms)
    return added


@dataclass
class Escalation:
    """Who is told what, when: the policy (per site where one is configured), recipient
    routes and configured channels."""

    policy: Policy
    routes: dict[str, tuple[Route, ...]]
    channels: dict[str, Channel]
    tick_s: float = 1.0
    site_policies: dict[str, Policy] = field(default_factory=dict)
    #: how often calibrations coming due are checked (reminders are queued once each)
    reminder_every_s: float = 3600.0
    #: signed links from each notification to its alarm (None: no link)
    links: Links | None = None
