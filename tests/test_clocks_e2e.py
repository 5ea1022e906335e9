"""A gateway on a wrong clock loses nothing, and its clock is reported and alarmed.

A real gateway process runs under libfaketime (Debian's ``faketime``: its wall clock
set off, its monotonic clock left true), on real Modbus servers, against its own
Mosquitto, a real collector process on a SQLite store and the alert service. Counted at
the end: readings taken at the edge against readings stored, and every stored reading
at a time of its own. Checked on the way: the gateway's ``clock`` event in the store,
its heartbeat's offset, and the alert service's "gateway clock off" alarm.
"""

from __future__ import annotations

import glob
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from alerts.db import make_engine, upgrade
from alerts.models import BreachRow
from alerts.service import AlertService
from coldchain.settings import MqttConfig
from tests.harness import Broker, CollectorProcess, wait_for
from tests.scenario import Setup, collector_config, outbox_counts, store_counts
from tests.test_alerts_supervised import rows

pytestmark = pytest.mark.e2e

MIN_MS = 60_000
DAY_MS = 86_400_000


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    assert found, "libfaketime is missing: scripts/test.sh installs Debian's faketime"
    return found[0]


@dataclass
class ClockRun:
    setup: Setup
    store: Path
    offset_file: Path
    engine: Engine
    alarms: list[str]

    def set_offset(self, offset: str) -> None:
        """The gateway's wall clock from now on: '+600' s, '-1d' (libfaketime's format)."""
        self.offset_file.write_text(offset + "\n")

    def stored(self) -> int:
        return store_counts(self.store, self.setup.gw)["stored"]

    def query(self, sql: str) -> list[tuple[object, ...]]:
        db = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute(sql, (self.setup.gw,)).fetchall()
        finally:
            db.close()

    def clock_events(self) -> list[tuple[object, ...]]:
        return self.query(
            "SELECT state, detail FROM events WHERE gateway = ? AND kind = 'clock' ORDER BY ts_ms"
        )

    def clock_breaches(self) -> list[BreachRow]:
        return [
            b
            for b in rows(self.engine, BreachRow)
            if b.gateway == self.setup.gw and b.kind == "gateway_clock"
        ]

    def reported_off(self, detail: str) -> BreachRow:
        """Readings flow; the gateway's first clock event says ``detail`` (a pattern:
        the offset is measured, to a transit time); the alert
        service's one clock breach, open."""
        wait_for(lambda: self.stored() >= 200, 60, "readings stored")
        wait_for(lambda: self.clock_events(), 30, "the gateway's clock event")
        state, said = self.clock_events()[0]
        assert state == "off" and re.fullmatch(detail, str(said)), said
        wait_for(lambda: self.clock_breaches(), 30, "the clock alarm")
        (breach,) = self.clock_breaches()
        assert breach.end_ms is None and breach.level == "warning"
        return breach

    def finish_and_count(self) -> int:
        """Stop the gateway once the store has caught up; every reading taken is stored,
        each at a time of its own."""
        wait_for(
            lambda: outbox_counts(self.setup.outbox)["sealed_rows"] < 100,
            60,
            "the outbox confirmed down to its live cycles",
        )
        self.setup.gateway.stop()
        taken = outbox_counts(self.setup.outbox)["taken"]
        wait_for(lambda: self.stored() >= taken, 60, f"stored == taken ({taken})")
        assert self.stored() == taken
        ((distinct,),) = self.query(
            "SELECT COUNT(*) FROM (SELECT DISTINCT sensor, ts_ms FROM readings WHERE gateway = ?)"
        )
        assert distinct == taken, "two readings of one sensor share a time"
        assert "Traceback" not in self.setup.gateway.log.read_text()
        return taken


def off_by(breach: BreachRow) -> tuple[str, float]:
    """The way and the minutes a clock breach says (measured: a transit time off)."""
    settings = json.loads(breach.settings)
    return settings["way"], settings["off_min"]


@pytest.fixture
def clock_run(
    tmp_path: Path, make_setup: Callable[..., Setup], unique: str
) -> Iterator[Callable[[str], ClockRun]]:
    started: list[Callable[[], None]] = []

    def make(offset: str) -> ClockRun:
        broker = Broker(tmp_path / "broker")
        broker.start()
        started.append(broker.stop)
        offset_file = tmp_path / "faketime"
        offset_file.write_text(offset + "\n")
        env = {
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(offset_file),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # sleeps and timeouts stay true
        }
        setup = make_setup(
            broker, record=False, confirm="store", confirm_timeout_s=3, gateway_env=env
        )
        store = tmp_path / "coldchain.sqlite"
        config = collector_config(
            tmp_path / "c1.toml", broker, store, f"c1-{unique}", f"g-{unique}", setup.site
        )
        collector = CollectorProcess(config, tmp_path / "c1.log")
        collector.start()
        started.append(collector.stop)
        db_url = f"sqlite:///{tmp_path / 'alerts.sqlite'}"
        upgrade(db_url)
        engine = make_engine(db_url)
        started.append(engine.dispose)
        alarms: list[str] = []
        svc = AlertService(
            engine,
            MqttConfig(port=broker.port, keepalive_s=5),
            client_id=f"alerts-{unique}",
            sites=(setup.site,),
            on_alarm=alarms.append,
        )
        svc.start()
        started.append(svc.stop)
        wait_for(lambda: svc.connected, 10, "the alert service connected")
        setup.gateway.start()
        return ClockRun(setup, store, offset_file, engine, alarms)

    yield make
    for stop in reversed(started):
        stop()


def test_a_gateway_clock_10_min_ahead_has_its_readings_kept_marked_and_alarmed(
    clock_run: Callable[[str], ClockRun],
) -> None:
    run = clock_run("+600")
    breach = run.reported_off(r"(10 min 0|9 min 5\d) s ahead of the collector's clock")
    assert off_by(breach) == ("ahead", pytest.approx(10.0, abs=0.2))
    assert any(
        re.search(r"gateway_clock.*clock (10\.[01]|9\.9) min ahead", line) for line in run.alarms
    )
    taken = run.finish_and_count()
    # every reading kept (none quarantined as "future"), marked, with its received time
    ((suspect, early),) = run.query(
        "SELECT COUNT(*), SUM(ts_ms - received_ms < 5 * 60000) FROM readings "
        "WHERE gateway = ? AND q = 'clock_suspect'"
    )
    assert suspect == taken and early == 0
    assert store_counts(run.store, run.setup.gw)["quarantined"] == 0


def test_a_gateway_clock_one_day_behind_is_stored_as_taken_reported_and_alarmed(
    clock_run: Callable[[str], ClockRun],
) -> None:
    run = clock_run("-1d")
    breach = run.reported_off(r"(1 d 0 h|23 h 59 min) behind the collector's clock")
    assert off_by(breach) == ("behind", pytest.approx(1440.0, abs=0.2))
    taken = run.finish_and_count()
    ((newest,),) = run.query("SELECT MAX(ts_ms) FROM readings WHERE gateway = ?")
    assert isinstance(newest, int) and newest < time.time_ns() // 1_000_000 - DAY_MS + MIN_MS
    assert taken >= 200


def test_a_gateway_clock_stepped_back_120_s_repeats_no_stamp_and_is_alarmed(
    clock_run: Callable[[str], ClockRun],
) -> None:
    run = clock_run("+0")
    wait_for(lambda: run.stored() >= 200, 60, "readings stored on a right clock")
    assert run.clock_events() == []
    run.set_offset("-120")  # a Raspberry Pi without a real-time clock, set back
    wait_for(
        lambda: any(state == "stepped_back" for state, _ in run.clock_events()),
        30,
        "the gateway's step-back event",
    )
    wait_for(lambda: run.clock_breaches(), 30, "the clock alarm (2 min behind)")
    before = run.stored()
    wait_for(lambda: run.stored() >= before + 150, 60, "readings stored after the step")
    events = dict(run.clock_events())
    assert "went back 2 min 0 s; stamps slow down" in str(events["stepped_back"])
    assert "2 min 0 s behind the collector" in str(events["off"])
    # stored == taken, and no two readings of a sensor at one time: the wall clock's
    # ticks came round again, the stamps did not (before, 71 were dropped as copies)
    run.finish_and_count()
