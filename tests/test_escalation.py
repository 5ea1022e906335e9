"""The escalation loop on a real database: open alarm + policy + clock -> notifications,
each queued once and delivered once, stopping when someone acknowledges."""

from __future__ import annotations

import json

from alerts.breach import Breach, Kind, Level
from alerts.db import make_engine, transaction, upgrade
from alerts.escalation import Route, escalate
from alerts.lifecycle import Policy, Step
from alerts.notify import Message, deliver_due
from alerts.repo import acknowledge_alarm, sync_alarm, upsert_breach

MIN = 60_000
T0 = 1_795_392_000_000
POLICY = Policy(steps=(Step(0, ("room-operator",)), Step(15, ("shift-lead",))), repeat_min=30)
ROUTES = {
    "room-operator": (Route("outbox-test", "operator@county.example"),),
    "shift-lead": (
        Route("outbox-test", "lead@county.example"),
        Route("outbox-test", "+86-139-0000-0000"),
    ),
}


class Recorder:
    name = "outbox-test"

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[str, ...]]] = []

    def send(self, message: Message, recipients: tuple[str, ...]) -> None:
        self.sent.append((message.subject, recipients))


def test_escalation_queues_each_step_once_and_stops_on_acknowledgement(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    breach = Breach(
        "cr1-th.temp",
        Kind.HIGH,
        Level.CRITICAL,
        T0,
        T0 + 15 * MIN,
        min_value=-14.0,
        max_value=-9.5,
        settings={"limit_c": -15.0},
    )
    with transaction(engine) as s:
        alarm, _ = sync_alarm(s, upsert_breach(s, "store-gw", breach), now=T0 + 15 * MIN)
    channel = Recorder()
    channels = {"outbox-test": channel}

    def tick(minute: int) -> int:
        added = escalate(engine, POLICY, ROUTES, T0 + minute * MIN)
        deliver_due(engine, channels, T0 + minute * MIN)
        return added

    raised = 15  # the alarm was raised at minute 15 (edge time)
    assert tick(raised) == 1
    assert tick(raised) == 0  # the same tick again (a restart): nothing twice
    assert tick(raised + 10) == 0
    assert tick(raised + 15) == 2  # shift lead: e-mail and SMS
    with transaction(engine) as s:
        acknowledge_alarm(
            s,
            alarm.id,
            user="li.wei",
            comment="compressor restarted",
            now=T0 + (raised + 20) * MIN,
        )
    assert tick(raised + 60) == 0  # acknowledged: no repeat
    assert [to for _, to in channel.sent] == [
        ("operator@county.example",),
        ("lead@county.example",),
        ("+86-139-0000-0000",),
    ]
    assert all(subject == "CRITICAL high cr1-th.temp" for subject, _ in channel.sent)
    engine.dispose()


def test_notification_body_names_batches_and_how_to_stop_it(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    breach = Breach("cr2-th.temp", Kind.HIGH, Level.WARNING, T0, T0 + 30 * MIN, settings={})
    with transaction(engine) as s:
        sync_alarm(s, upsert_breach(s, "store-gw", breach), now=T0 + 30 * MIN)
    escalate(engine, POLICY, ROUTES, T0 + 30 * MIN)
    from sqlalchemy import text

    with engine.connect() as conn:
        body, recipients = conn.execute(text("SELECT body, recipients FROM notifications")).one()
    engine.dispose()
    assert "Acknowledge with a comment" in body
    assert json.loads(recipients) == ["operator@county.example"]
