"""The watchdog on the watchers, as processes against a Mosquitto of its own and a real
webhook receiver: it tells people within its configured time when the broker is killed
and when the alert service stops working, and again when each is back."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.db import upgrade
from tests.harness import Broker, CliProcess, wait_for
from tests.test_alerts_standby import posted
from tests.test_notify import Receiver

pytestmark = pytest.mark.e2e

ALERTS = """
[alerts]
id = "alerts-w"
sites = ["store"]

[mqtt]
host = "127.0.0.1"
port = {port}
keepalive_s = 5
reconnect_min_s = 1
reconnect_max_s = 1
"""

WATCHDOG = """
[watchdog]
id = "watchdog-test"
broker_down_s = 3
stale_s = 8
check_s = 0.5
notify = ["duty"]
services = [{{ kind = "alerts", id = "alerts-w" }}]

[mqtt]
host = "127.0.0.1"
port = {port}
keepalive_s = 5
reconnect_min_s = 1
reconnect_max_s = 1

[[routes]]
recipient = "duty"
channel = "hook"
address = "ops-room"

[channels.hook]
kind = "webhook"
url = "http://127.0.0.1:{hook}/hook"
secret_env = "COLDCHAIN_TEST_HOOK_SECRET"
"""


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


def subjects(receiver: Receiver) -> list[str]:
    return [str(p["subject"]) for p in posted(receiver)]


def test_the_watchdog_tells_when_the_broker_dies_and_when_the_alert_service_stops_working(
    tmp_path: Path, own_broker: Broker, unique: str
) -> None:
    receiver = Receiver()
    db_url = f"sqlite:///{tmp_path / 'alerts.sqlite'}"
    upgrade(db_url)
    (tmp_path / "alerts.toml").write_text(ALERTS.format(port=own_broker.port))
    (tmp_path / "watchdog.toml").write_text(
        WATCHDOG.format(port=own_broker.port, hook=receiver.server.server_address[1])
    )
    alerts = CliProcess(
        ["alerts", "run", "--config", str(tmp_path / "alerts.toml")],
        tmp_path / "alerts.log",
        {"COLDCHAIN_DB_URL": db_url},
    )
    dog = CliProcess(
        ["watchdog", "run", "--config", str(tmp_path / "watchdog.toml")],
        tmp_path / "watchdog.log",
        {"COLDCHAIN_TEST_HOOK_SECRET": "a-test-secret"},
    )
    try:
        alerts.start()
        dog.start()
        time.sleep(10)  # past stale_s: every heartbeat has had time to come
        assert subjects(receiver) == [], (tmp_path / "watchdog.log").read_text()

        own_broker.stop(signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: any("DOWN broker" in s for s in subjects(receiver)), 15, "broker down")
        assert time.monotonic() - killed < 3 + 5  # broker_down_s, then a check or two
        own_broker.start()
        wait_for(
            lambda: any("RECOVERED broker" in s for s in subjects(receiver)), 20, "broker back"
        )
        assert not any("alerts/" in s for s in subjects(receiver))  # the broker's, not theirs

        assert alerts.proc is not None
        os.kill(alerts.proc.pid, signal.SIGSTOP)  # its worker and its beats stop
        stopped = time.monotonic()
        wait_for(
            lambda: any("DOWN alerts/alerts-w" in s for s in subjects(receiver)),
            20,
            "the alert service's stop told",
        )
        assert time.monotonic() - stopped < 8 + 5  # its will (7.5 s) or stale_s, then a check
        os.kill(alerts.proc.pid, signal.SIGCONT)
        wait_for(
            lambda: any("RECOVERED alerts/alerts-w" in s for s in subjects(receiver)),
            30,
            "the alert service's recovery told",
        )
        assert dog.running
    finally:
        if alerts.proc is not None and alerts.proc.poll() is None:
            os.kill(alerts.proc.pid, signal.SIGCONT)
        alerts.stop()
        dog.stop()
        receiver.close()
