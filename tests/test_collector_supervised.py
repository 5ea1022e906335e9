"""The collector never stops in silence (issue 12), as a process against a real
Mosquitto and a real SQLite file: a full disk is retried while /health says degraded and
every reading sent meanwhile is stored once space returns; a message the store refuses
for good is quarantined with the store's reason while the others in its batch are
stored; the metrics name what it counts."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldchain.wire import Quality, Reading
from tests.harness import Broker, CollectorProcess, fill, free_port, tmpfs, wait_for
from tests.scenario import collector_config
from tests.test_alerts_supervised import Gateway

SITE, GW = "store", "store-gw"
PER_BATCH = 50


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def health(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())
    except OSError:
        return 0, {}


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def stored(path: Path) -> tuple[int, int]:
    """(readings stored, the readings watermark) from the store file."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        count = db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        upto = db.execute(
            "SELECT COALESCE(MAX(upto), 0) FROM seq_watermark WHERE stream = 'readings'"
        ).fetchone()[0]
        return int(count), int(upto)
    except sqlite3.Error:
        return 0, 0
    finally:
        db.close()


START_MS = time.time_ns() // 1_000_000 - 3_600_000


def cycle(seq: int, sensor_prefix: str = "s") -> list[Reading]:
    ts = START_MS + seq * 1000
    return [
        Reading(sensor=f"{sensor_prefix}{i}", ts_ms=ts, q=Quality.OK, temp_c=-18.0 + seq / 100)
        for i in range(PER_BATCH)
    ]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs of our own: the store's file system, filled and freed at will."""
    with tmpfs(tmp_path / "disk", "2m") as disk:
        yield disk


def start_collector(
    tmp_path: Path, broker: Broker, store: Path, unique: str
) -> tuple[CollectorProcess, int]:
    port = free_port()
    config = collector_config(
        tmp_path / "collector.toml", broker, store, f"c-{unique}", f"g-{unique}", SITE
    )
    proc = CollectorProcess(
        config,
        tmp_path / "collector.log",
    )
    proc.env = {"COLDCHAIN_HEALTH_PORT": str(port), "COLDCHAIN_HEALTH_FILE": str(tmp_path / "ok")}
    proc.start()
    wait_for(lambda: health(port)[0] == 200, 30, "the collector healthy")
    wait_for((tmp_path / "ok").exists, 10, "the health file touched while ok")
    return proc, port


def test_a_full_disk_is_retried_while_health_says_so_and_nothing_sent_meanwhile_is_lost(
    tmp_path: Path, small_disk: Path, running_broker: Broker, unique: str
) -> None:
    store = small_disk / "readings.sqlite"
    proc, port = start_collector(tmp_path, running_broker, store, unique)
    gateway = Gateway(running_broker.port)
    try:
        for _ in range(10):
            gateway.send(cycle(gateway.seq + 1))
        wait_for(lambda: stored(store) == (10 * PER_BATCH, 10), 30, "the first batches stored")
        ballast = fill(small_disk)
        for _ in range(30):
            gateway.send(cycle(gateway.seq + 1))
        wait_for(lambda: health(port)[0] == 503, 30, "health 503 while the disk is full")
        _, body = health(port)
        (service,) = body["services"]  # type: ignore[misc]
        assert service["state"] == "degraded", body
        assert any("store unavailable" in r for r in service["reasons"]), body
        touched = (tmp_path / "ok").stat().st_mtime
        time.sleep(3)
        assert (tmp_path / "ok").stat().st_mtime == touched  # not touched while degraded
        assert proc.running
        ballast.unlink()
        wait_for(lambda: stored(store) == (40 * PER_BATCH, 40), 60, "every batch stored")
        wait_for(lambda: health(port)[0] == 200, 30, "health ok again")
        log = (tmp_path / "collector.log").read_text()
        assert log.count("store unavailable") == 1, log  # once per change of state
        assert "store back after" in log
        scraped = metrics(port)
        for name in (
            "coldchain_collector_messages_received_total",
            "coldchain_collector_readings_stored_total",
            "coldchain_collector_readings_duplicate_total",
            "coldchain_collector_quarantined_total",
            "coldchain_collector_store_retries_total",
            "coldchain_collector_store_write_seconds_bucket",
            "coldchain_collector_queued_messages",
            "coldchain_collector_last_commit_age_seconds",
            "coldchain_collector_health_ok 1.0",
            'coldchain_collector_problems_total{problem="store"} 1.0',
        ):
            assert name in scraped, name
        assert f"coldchain_collector_readings_stored_total {40.0 * PER_BATCH}" in scraped
    finally:
        gateway.close()
        proc.stop()


def test_a_message_the_store_refuses_for_good_is_quarantined_and_its_batch_mates_stored(
    tmp_path: Path, running_broker: Broker, unique: str
) -> None:
    store = tmp_path / "readings.sqlite"
    proc, port = start_collector(tmp_path, running_broker, store, unique)
    gateway = Gateway(running_broker.port)
    try:
        gateway.send(cycle(1))
        wait_for(lambda: stored(store)[0] == PER_BATCH, 30, "a first batch stored")
        db = sqlite3.connect(store, isolation_level=None)
        # the store itself refuses one sensor's readings: an error that is not "not now"
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON readings WHEN NEW.sensor = 'bad0' "
            "BEGIN SELECT RAISE(ABORT, 'this sensor is refused here'); END"
        )
        db.close()
        proc.stop()  # queued at the broker meanwhile: one batch of several messages
        for seq in range(2, 12):
            gateway.send(cycle(seq, "bad" if seq == 6 else f"m{seq}-"))
        proc.start()
        wait_for(lambda: stored(store)[0] == 10 * PER_BATCH, 30, "the nine good messages stored")

        def quarantined() -> list[str]:
            db = sqlite3.connect(store)
            try:
                return [r for (r,) in db.execute("SELECT reason FROM quarantine")]
            finally:
                db.close()

        # the refused one is quarantined after its batch mates are stored
        wait_for(lambda: bool(quarantined()), 30, "the refused message quarantined")
        reasons = quarantined()
        assert len(reasons) == 1 and "this sensor is refused here" in reasons[0], reasons
        assert "refused by the store" in reasons[0]
        wait_for(lambda: health(port)[0] == 200, 30, "health ok")
        scraped = metrics(port)
        assert 'coldchain_collector_quarantined_by_reason_total{reason="store"} 1.0' in scraped
        assert proc.running
        # the cause fixed, an operator puts the message back
        db = sqlite3.connect(store, isolation_level=None)
        db.execute("DROP TRIGGER refuse")
        db.close()
        config = ["--config", str(tmp_path / "collector.toml")]
        listed = cli("quarantine", "list", *config)
        (line,) = listed.splitlines()
        row_id = line.split("\t")[0]
        assert f"coldchain/v1/{SITE}/{GW}/readings" in line and "refused here" in line
        shown = cli("quarantine", "show", row_id, *config)
        assert '"sensor":"bad0"' in shown and "reason: refused by the store" in shown
        assert cli("quarantine", "replay", row_id, *config).split() == [row_id, "stored"]
        assert stored(store)[0] == 11 * PER_BATCH
        assert cli("quarantine", "list", *config) == ""
    finally:
        gateway.close()
        proc.stop()
