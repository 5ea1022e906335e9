"""The escalation loop on a real database: open alarm + policy + clock -> notifications,
each queued once and delivered once, stopping when someone acknowledges."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from alerts.db import make_engine, transaction, upgrade
from alerts.errors import Refused
from alerts.escalation import Route, escalate
from alerts.lifecycle import Policy, Step
from alerts.links import Links, read_token
from alerts.notify import Message, deliver_due
from alerts.repo import acknowledge_alarm, sync_alarm, upsert_breach
from coldchain.judging.breach import Breach, Kind, Level

MIN = 60_000
T0 = 1_795_392_000_000
POLICY = Policy(steps=(Step(0, ("room-operator",)), Step(15, ("shift-lead",))), repeat_min=30)
ROUTES = {
    "room-operator": (Route("outbox-test", "operator@county.example", "en"),),
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
    assert [subject for subject, _ in channel.sent] == [
        "[Critical] High · cr1-th.temp",  # in each route's language
        "[严重] 温度过高 · cr1-th.temp",
        "[严重] 温度过高 · cr1-th.temp",
    ]
    engine.dispose()


def test_a_notification_reads_as_people_read_and_links_to_its_alarm(db_url: str) -> None:
    """In the route's language; the time in the site's zone with its date (a backlog may
    be days old); values at the sensor's resolution; a signed link to the alarm that
    names its recipient and expires."""
    upgrade(db_url)
    engine = make_engine(db_url)
    breach = Breach(
        "cr2-th.temp",
        Kind.HIGH,
        Level.WARNING,
        T0,
        T0 + 30 * MIN,
        min_value=4.4,
        max_value=7.6000000000000005,
        settings={},
    )
    with transaction(engine) as s:
        alarm, _ = sync_alarm(s, upsert_breach(s, "store-gw", breach), now=T0 + 30 * MIN)
    links = Links("https://coldchain.county.example", "k" * 32, valid_ms=24 * 60 * MIN)
    escalate(engine, POLICY, ROUTES, T0 + 30 * MIN, links=links)
    escalate(engine, POLICY, ROUTES, T0 + 45 * MIN, links=links)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT body, recipients FROM notifications ORDER BY due_ms, key")
        ).all()
    engine.dispose()
    bodies = {json.loads(recipients)[0]: body for body, recipients in rows}
    english = bodies["operator@county.example"]
    assert english.startswith("cr2-th.temp: High (Warning), since 2026-11-23 08:00 (UTC+08:00)")
    assert "max 7.6 °C" in english and "7.6000" not in english and "None" not in english
    assert "edge time" not in english and "Acknowledge with a comment" in english
    chinese = bodies["lead@county.example"]
    assert chinese.startswith("cr2-th.temp：温度过高（预警），开始于 2026-11-23 08:00 (UTC+08:00)")
    assert "最高 7.6 °C" in chinese and "请填写说明并确认" in chinese
    link = english.rsplit(": ", 1)[1]
    assert link.startswith("https://coldchain.county.example/a/")
    found = read_token("k" * 32, link.rsplit("/", 1)[1], T0 + 31 * MIN)
    assert (found.alarm_id, found.recipient) == (alarm.id, "room-operator")
    with pytest.raises(Refused, match="expired"):
        read_token("k" * 32, link.rsplit("/", 1)[1], T0 + 30 * MIN + 25 * 60 * MIN)
    with pytest.raises(Refused, match="not one of ours"):
        read_token("another secret of 32 characters!", link.rsplit("/", 1)[1], T0)
    assert json.loads(rows[0][1]) == ["operator@county.example"]
