"""Zero loss end to end: a gateway frees a reading only when a collector has stored it.

Each test runs its own Mosquitto, configured the way that loses messages after a PUBACK
(the default autosave interval; a stock max_queued_messages of 1000; a shared member
that dies for good), a real gateway process on real Modbus servers and real collector
processes on one SQLite store. Counted at the end: readings taken at the edge (the
outbox's own count) against readings stored; the store's seq watermark against the
last seq the gateway sealed, with nothing seen above it; and each sensor's series in
the store without a hole. And each test checks that the fault happened: the gateway
had to send again what the store never got.
"""

from __future__ import annotations

import itertools
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.sqlite_store import SqliteStore
from tests.harness import Broker, CollectorProcess, fill, tmpfs, wait_for
from tests.scenario import (
    INTERVAL_S,
    READINGS_PER_CYCLE,
    Setup,
    collector_config,
    outbox_counts,
    store_counts,
)

pytestmark = pytest.mark.e2e

#: a broker as a site would run it from a stock package: its default autosave interval
DEFAULT_AUTOSAVE = ["autosave_interval 1800"]
#: Mosquitto's default queue bound, past which it drops while still acknowledging
STOCK_QUEUE = ["max_queued_messages 1000"]


@dataclass
class Run:
    broker: Broker
    setup: Setup
    store: Path
    collectors: dict[str, CollectorProcess]

    def stored(self) -> int:
        return store_counts(self.store, self.setup.gw)["stored"]

    def wait_stored(self, more: int, timeout_s: float = 60) -> None:
        start = self.stored()
        wait_for(lambda: self.stored() >= start + more, timeout_s, f"{more} more stored")

    def finish_and_count(self, timeout_s: float = 120) -> int:
        """Wait until the store holds every reading taken, stop the gateway, count."""
        gateway_log = self.setup.gateway.log
        wait_for(
            lambda: outbox_counts(self.setup.outbox)["sealed_rows"] < 5 * READINGS_PER_CYCLE,
            timeout_s,
            "the outbox to be confirmed down to its live cycles",
        )
        self.setup.gateway.stop()
        taken = outbox_counts(self.setup.outbox)["taken"]
        wait_for(
            lambda: self.stored() >= taken,
            timeout_s,
            f"stored == taken ({taken}), stored {self.stored()}",
        )
        counts = store_counts(self.store, self.setup.gw)
        assert counts["stored"] == taken, counts  # by (sensor, ts_ms): the store's key
        last_seq = sealed_seqs(self.setup.outbox)
        assert counts["upto"] == last_seq and counts["gaps"] == 0, (counts, last_seq)
        assert outbox_counts(self.setup.outbox)["sealed_rows"] == 0, "left unconfirmed"
        holes = series_holes(self.store, self.setup.gw)
        assert not holes, holes
        assert "Traceback" not in gateway_log.read_text()
        return taken


def sealed_seqs(outbox: Path) -> int:
    """The last readings seq the gateway sealed."""
    db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'next_seq.readings'").fetchone()
    finally:
        db.close()
    return int(row[0]) - 1


def series_holes(store: Path, gateway: str, slack_s: float = 1.5) -> dict[str, float]:
    """Sensors whose stored series has a gap longer than a few poll intervals (the
    gateway polled all along: a hole is a reading lost)."""
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute(
            "SELECT sensor, ts_ms FROM readings WHERE gateway = ? ORDER BY sensor, ts_ms",
            (gateway,),
        ).fetchall()
    finally:
        db.close()
    worst: dict[str, float] = {}
    for (sensor, ts), (next_sensor, next_ts) in itertools.pairwise(rows):
        if sensor == next_sensor and (next_ts - ts) / 1000 > INTERVAL_S + slack_s:
            worst[sensor] = max(worst.get(sensor, 0.0), (next_ts - ts) / 1000)
    return worst


def resent_for_loss(gateway_log: Path) -> int:
    """Resend rounds the gateway made because the collectors confirmed other messages
    and not these (not the probes it sends while nobody confirms)."""
    return gateway_log.read_text().count("the store has not confirmed them: sending again")


@pytest.fixture
def make_run(
    tmp_path: Path, make_setup: Callable[..., Setup], unique: str
) -> Iterator[Callable[..., Run]]:
    brokers: list[Broker] = []
    collectors: list[CollectorProcess] = []

    def make(
        broker_lines: list[str],
        members: tuple[str, ...] = ("c1",),
        session_expiry_s: int = 3600,
        **outbox: object,
    ) -> Run:
        broker = Broker(tmp_path / "broker", extra_lines=broker_lines)
        broker.start()
        brokers.append(broker)
        setup = make_setup(broker, record=False, confirm="store", confirm_timeout_s=3, **outbox)
        store = tmp_path / "coldchain.sqlite"
        procs: dict[str, CollectorProcess] = {}
        for name in members:
            config = collector_config(
                tmp_path / f"{name}.toml",
                broker,
                store,
                f"{name}-{unique}",
                f"g-{unique}",
                setup.site,
            )
            text = config.read_text().replace(
                "[collector]\n", f"[collector]\nsession_expiry_s = {session_expiry_s}\n"
            )
            config.write_text(text)
            procs[name] = CollectorProcess(config, tmp_path / f"{name}.log")
            collectors.append(procs[name])
        return Run(broker, setup, store, procs)

    yield make
    for proc in collectors:
        proc.stop()
    for broker in brokers:
        broker.stop()


def test_broker_killed_again_and_again_while_the_collector_is_down_loses_nothing(
    make_run: Callable[..., Run],
) -> None:
    run = make_run(DEFAULT_AUTOSAVE)
    collector = run.collectors["c1"]
    collector.start()
    run.setup.gateway.start()
    run.wait_stored(5 * READINGS_PER_CYCLE)
    collector.stop()  # its session stays: the broker queues for it, in memory
    for _ in range(4):
        time.sleep(2.5)
        run.broker.stop(signal.SIGKILL)  # gone before any autosave
        run.broker.start()
    time.sleep(2.0)
    collector.start()
    taken = run.finish_and_count()
    assert taken > 40 * READINGS_PER_CYCLE
    assert resent_for_loss(run.setup.gateway.log) >= 1, "the broker lost nothing: no test"


def test_a_stock_broker_dropping_its_full_queue_loses_nothing(
    make_run: Callable[..., Run],
) -> None:
    # 50 messages a second: the 1,000-message queue is full after 20 s
    run = make_run(STOCK_QUEUE, interval_s=0.02, backlog_rate_per_s=5000, linger_ms=0)
    collector = run.collectors["c1"]
    collector.start()
    run.setup.gateway.start()
    run.wait_stored(5 * READINGS_PER_CYCLE)
    collector.stop()
    time.sleep(30)  # 1,500 messages for a queue of 1,000
    collector.start()
    run.finish_and_count(timeout_s=180)
    assert (
        "Outgoing messages are being dropped" in (run.broker.workdir / "mosquitto.log").read_text()
    )
    assert resent_for_loss(run.setup.gateway.log) >= 1


def test_a_shared_member_killed_for_good_loses_nothing(make_run: Callable[..., Run]) -> None:
    run = make_run([], members=("c1", "c2"), session_expiry_s=5)
    for proc in run.collectors.values():
        proc.start()
    run.setup.gateway.start()
    run.wait_stored(10 * READINGS_PER_CYCLE)
    run.collectors["c2"].kill9()  # never comes back; its share queues until expiry
    time.sleep(8.0)
    run.wait_stored(10 * READINGS_PER_CYCLE)
    run.finish_and_count()
    assert resent_for_loss(run.setup.gateway.log) >= 1


def test_an_outbox_on_a_full_disk_for_60_s_loses_nothing(
    make_run: Callable[..., Run], tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "disk", "16m") as disk:
        run = make_run([], path=str(disk / "outbox.sqlite"))
        run.collectors["c1"].start()
        run.setup.gateway.start()
        run.wait_stored(5 * READINGS_PER_CYCLE)
        ballast = fill(disk)
        time.sleep(60)  # polls go on into memory, the cab view with them
        stored_while_full = run.stored()
        ballast.unlink()
        run.finish_and_count()
        assert stored_while_full < outbox_counts(run.setup.outbox)["taken"]
        log = run.setup.gateway.log.read_text()
        assert log.count("the outbox cannot be written") == 1, "one line per change of state"
        assert "the outbox is written again after" in log
        states = [
            state
            for _gw, kind, _source, state in SqliteStore(run.store).events()
            if kind == "outbox"
        ]
        assert states == ["unwritable", "writable"], states
