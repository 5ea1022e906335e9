"""Two alert service processes on one PostgreSQL database, a real Mosquitto and a real
webhook receiver (hot standby, alerts/leader.py): one instance writes and notifies, the
other judges in standby; the writer is killed -9 mid-excursion and the standby takes
over. Every breach, alarm and notification exists once, and the survivor raises what the
dead one would have."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.db import make_engine, upgrade
from alerts.models import AlarmRow, BreachRow
from coldchain.wire import Quality, Reading
from tests.harness import Broker, CliProcess, wait_for
from tests.test_alerts_service import seed
from tests.test_alerts_supervised import AIR, GW, MIN, SITE, Gateway, now_ms
from tests.test_notify import Receiver

pytestmark = pytest.mark.e2e

CONFIG = """
[alerts]
id = "{ident}"
sites = ["{site}"]

[mqtt]
host = "127.0.0.1"
port = {port}
keepalive_s = 5
reconnect_min_s = 1
reconnect_max_s = 1

[escalation]
repeat_min = 600
[[escalation.steps]]
after_min = 0
notify = ["duty"]

[[routes]]
recipient = "duty"
channel = "hook"
address = "ops-room"
lang = "en"

[channels.hook]
kind = "webhook"
url = "http://127.0.0.1:{hook}/hook"
secret_env = "COLDCHAIN_TEST_HOOK_SECRET"
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(status=204)
    yield r
    r.close()


def posted(receiver: Receiver) -> list[dict[str, object]]:
    """The notifications the webhook receiver was sent, decoded."""
    return [json.loads(body) for _headers, body in receiver.requests]


def temps(values: list[float], end_ms: int) -> list[Reading]:
    start = end_ms - (len(values) - 1) * MIN
    return [
        Reading(sensor=AIR, ts_ms=start + i * MIN, q=Quality.OK, temp_c=v)
        for i, v in enumerate(values)
    ]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_standby_takes_over_from_a_killed_writer_and_nothing_is_twice_or_missed(
    db_url: str, running_broker: Broker, receiver: Receiver, tmp_path: Path, unique: str
) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    seed(engine, gateway=GW, site=SITE)
    env = {"COLDCHAIN_DB_URL": db_url, "COLDCHAIN_TEST_HOOK_SECRET": "a-test-secret"}
    instances = {}
    for name in ("a", "b"):
        config = tmp_path / f"alerts-{name}.toml"
        config.write_text(
            CONFIG.format(
                ident=f"alerts-{name}-{unique}",
                site=SITE,
                port=running_broker.port,
                hook=receiver.server.server_address[1],
            )
        )
        instances[name] = CliProcess(
            ["alerts", "run", "--config", str(config)], tmp_path / f"{name}.log", env
        )

    def log(name: str) -> str:
        path = tmp_path / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def rows() -> tuple[list[BreachRow], list[AlarmRow]]:
        with Session(engine) as s:
            b = list(s.execute(select(BreachRow).where(BreachRow.sensor == AIR)).scalars())
            a = list(s.execute(select(AlarmRow)).scalars())
            for row in (*b, *a):
                s.expunge(row)
            return b, a

    gateway = Gateway(running_broker.port)
    a, b = instances["a"], instances["b"]
    try:
        a.start()
        wait_for(lambda: "took the lead" in log("a"), 30, "the first instance leading")
        b.start()
        wait_for(lambda: "broker connected" in log("b"), 30, "the standby connected")
        time.sleep(1)  # both subscribed
        assert "took the lead" not in log("b")
        end = now_ms() - 20 * MIN
        # in range for 5 minutes, then 17 minutes at -10 °C: critical (> -15 °C for 15 min)
        gateway.send(temps([-20.0] * 5 + [-10.0] * 17, end))
        wait_for(lambda: len(posted(receiver)) == 1, 30, "the critical alarm notified")
        breaches, _ = rows()
        assert [(x.kind, x.level, x.end_ms) for x in breaches] == [("high", "critical", None)]
        a.kill9()  # mid-excursion
        # 14 more minutes at -10 °C (30 minutes above -18 °C: warning), then back in range
        gateway.send(temps([-10.0] * 14 + [-20.0] * 6, end + 20 * MIN))
        wait_for(lambda: "took the lead" in log("b"), 30, "the standby taking the lead")
        wait_for(
            lambda: (
                {(x.level, x.end_reason) for x in rows()[0]}
                == {("critical", "back_in_range"), ("warning", "back_in_range")}
            ),
            30,
            "the survivor's warning raised and both ended",
        )
        wait_for(lambda: len(posted(receiver)) == 2, 30, "the warning notified by the survivor")
        time.sleep(3)  # nothing else comes
        breaches, alarms = rows()
        assert sorted((x.kind, x.level) for x in breaches) == [
            ("high", "critical"),
            ("high", "warning"),
        ]
        assert len(alarms) == 2 and {x.breach_id for x in alarms} == {x.id for x in breaches}
        severities = sorted(str(p["severity"]) for p in posted(receiver))
        assert severities == ["critical", "warning"], posted(receiver)
        assert len({p["alarm_id"] for p in posted(receiver)}) == 2
        # the warning's excursion was over when it became known: told once, as such
        (late,) = [p for p in posted(receiver) if p["severity"] == "warning"]
        assert "while monitoring was down" in str(late["subject"])
        assert "over since" in str(late["body"])
        assert {x.state for x in alarms} == {"cleared"}  # on the board until acknowledged
        assert b.running
    finally:
        gateway.close()
        for proc in instances.values():
            proc.stop()
        engine.dispose()
        os.environ.pop("COLDCHAIN_TEST_HOOK_SECRET", None)


def test_a_lead_given_up_is_free_at_once_for_the_next_instance(db_url: str) -> None:
    """A service stopped and started again at once (a restart, a deploy) takes the lead
    on its first try: the lock is freed before ``release`` returns, not when the
    server gets round to ending the old connection (the restarted service would judge
    in standby and store nothing until its next tick)."""
    from alerts.leader import Lead

    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        holder = Lead(engine, "alerts-1")
        assert holder.poll() == (True, True)
        assert Lead(engine, "alerts-2").poll() == (False, False)  # held: the other waits
        for turn in range(20):
            holder.release()
            holder = Lead(engine, f"alerts-{turn}")
            assert holder.poll() == (True, True), f"turn {turn}: the lead was not free"
        holder.release()
    finally:
        engine.dispose()
