"""Gateway -> real Mosquitto -> collector -> store, counted end to end.

"Taken" is the gateway outbox's own count of readings committed at the edge; "stored"
is what the store holds for that gateway. Every test ends with taken == stored, no
reading twice (the store's primary key would refuse a second copy, so the check is
on counts and identities), and the store's sequence watermark without a gap.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from simulator.broker import free_port, stop_process
from tests.harness import Broker, CollectorProcess, wait_for
from tests.scenario import READINGS_PER_CYCLE, Setup, collector_config, outbox_counts, store_counts

pytestmark = pytest.mark.e2e


@dataclass
class Pipeline:
    setup: Setup
    store: Path
    make_collector: Callable[[str], CollectorProcess]

    def taken(self) -> int:
        return outbox_counts(self.setup.outbox)["taken"]

    def stored(self) -> int:
        return store_counts(self.store, self.setup.gw)["stored"]

    def wait_flowing(self, n_readings: int, timeout_s: float = 30) -> None:
        start = self.stored()
        wait_for(
            lambda: self.stored() >= start + n_readings,
            timeout_s,
            f"{n_readings} more readings stored",
        )

    def finish_and_check(self, timeout_s: float = 60) -> int:
        """Stop the gateway (it drains), wait until everything is stored, compare."""
        self.setup.gateway.stop()
        left = outbox_counts(self.setup.outbox)
        assert left["pending"] == 0 and left["sealed_rows"] == 0, left
        taken = self.taken()
        wait_for(
            lambda: self.stored() >= taken,
            timeout_s,
            f"stored == taken ({taken}); stored {self.stored()}",
        )
        time.sleep(0.5)  # anything more would be a duplicate or a reading never taken
        counts = store_counts(self.store, self.setup.gw)
        assert counts["stored"] == taken, counts
        assert counts["gaps"] == 0, counts
        return taken


@pytest.fixture
def collector_setup(make_setup: Callable[..., Setup], running_broker: Broker) -> Setup:
    """Devices and a gateway, and no other subscriber than the collectors under test."""
    return make_setup(running_broker, record=False, confirm="store")


@pytest.fixture
def pipeline(
    tmp_path: Path, collector_setup: Setup, running_broker: Broker, unique: str
) -> Iterator[Pipeline]:
    setup = collector_setup
    store = tmp_path / "coldchain.sqlite"
    collectors: list[CollectorProcess] = []

    def make(name: str) -> CollectorProcess:
        config = collector_config(
            tmp_path / f"{name}.toml",
            running_broker,
            store,
            f"{name}-{unique}",
            f"g-{unique}",
            setup.site,
        )
        proc = CollectorProcess(config, tmp_path / f"{name}.log")
        collectors.append(proc)
        return proc

    yield Pipeline(setup, store, make)
    for proc in collectors:
        proc.stop()


def test_every_reading_taken_is_stored_once_across_a_broker_restart(
    pipeline: Pipeline, running_broker: Broker
) -> None:
    collector = pipeline.make_collector("c1")
    collector.start()
    pipeline.setup.gateway.start()
    pipeline.wait_flowing(5 * READINGS_PER_CYCLE)
    running_broker.restart(down_s=2.0)
    pipeline.wait_flowing(10 * READINGS_PER_CYCLE, timeout_s=60)
    assert pipeline.finish_and_check() > 20 * READINGS_PER_CYCLE


def test_collector_killed_mid_batch_loses_and_duplicates_nothing(pipeline: Pipeline) -> None:
    collector = pipeline.make_collector("c1")
    collector.start()
    pipeline.setup.gateway.start()
    pipeline.wait_flowing(5 * READINGS_PER_CYCLE)
    for _ in range(2):
        collector.kill9()
        time.sleep(1.5)  # the broker queues for the persistent session meanwhile
        collector.start()
        pipeline.wait_flowing(5 * READINGS_PER_CYCLE)
    pipeline.finish_and_check()


def test_store_locked_for_a_while_holds_acks_and_then_stores_everything(pipeline: Pipeline) -> None:
    collector = pipeline.make_collector("c1")
    collector.start()
    pipeline.setup.gateway.start()
    pipeline.wait_flowing(5 * READINGS_PER_CYCLE)
    locker = sqlite3.connect(pipeline.store, isolation_level=None, timeout=10)
    locker.execute("BEGIN EXCLUSIVE")  # nobody else may write: the store is "down"
    try:
        stored_while_locked = pipeline.stored()
        time.sleep(4.0)
        assert pipeline.stored() == stored_while_locked
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    pipeline.wait_flowing(10 * READINGS_PER_CYCLE, timeout_s=60)
    log = collector.log.read_text()
    assert "store unavailable" in log and "store back" in log
    assert log.count("store unavailable") == 1  # once per change of state
    pipeline.finish_and_check()


def test_gateway_killed_mid_backlog_still_ends_stored_exactly_once(
    pipeline: Pipeline, running_broker: Broker
) -> None:
    collector = pipeline.make_collector("c1")
    collector.start()
    gateway = pipeline.setup.gateway
    gateway.start()
    pipeline.wait_flowing(5 * READINGS_PER_CYCLE)
    running_broker.stop()
    time.sleep(4.0)
    running_broker.start()
    wait_for(
        lambda: outbox_counts(pipeline.setup.outbox)["pending"] < 20 * READINGS_PER_CYCLE,
        30,
        "the backlog to start draining",
    )
    gateway.kill9()
    left = outbox_counts(pipeline.setup.outbox)
    assert left["pending"] + left["sealed_rows"] > 0, "the backlog had already drained"
    gateway.start()
    wait_for(
        lambda: (
            outbox_counts(pipeline.setup.outbox)["sealed_messages"] == 0
            and outbox_counts(pipeline.setup.outbox)["pending"] < 3 * READINGS_PER_CYCLE
        ),
        60,
        "the backlog to drain after the restart",
    )
    pipeline.finish_and_check()


def test_gateway_started_before_any_collector_existed_loses_nothing(pipeline: Pipeline) -> None:
    """The broker answers "no matching subscribers" until a collector session exists; the
    gateway keeps those messages and sends them again."""
    pipeline.setup.gateway.start()
    wait_for(
        lambda: outbox_counts(pipeline.setup.outbox)["taken"] >= 10 * READINGS_PER_CYCLE,
        30,
        "readings taken with no collector anywhere",
    )
    collector = pipeline.make_collector("c1")
    collector.start()
    pipeline.wait_flowing(15 * READINGS_PER_CYCLE, timeout_s=60)
    pipeline.finish_and_check()
    assert "No matching subscribers" in (pipeline.setup.gateway.log.read_text())


def test_two_collectors_share_the_stream_and_one_can_die(pipeline: Pipeline) -> None:
    """Mosquitto keeps a dead member's share of the stream in its persistent session;
    the survivor goes on storing its own share, and when the dead one is restarted under
    the same id (a restart policy does that) its share arrives: nothing lost, nothing twice."""
    first, second = pipeline.make_collector("c1"), pipeline.make_collector("c2")
    first.start()
    second.start()
    pipeline.setup.gateway.start()
    pipeline.wait_flowing(20 * READINGS_PER_CYCLE)
    second.kill9()
    pipeline.wait_flowing(10 * READINGS_PER_CYCLE, timeout_s=60)  # the survivor's share
    time.sleep(1.0)
    second.start()
    pipeline.finish_and_check()
    logs = [c.log.read_text() for c in (first, second)]
    assert all("subscribed to $share/" in log for log in logs)
    assert "session resumed" in logs[1]


@pytest.mark.e2e
def test_two_collectors_on_one_shared_subscription_split_the_load_and_store_it_once(
    pipeline: Pipeline,
) -> None:
    """Scaling out: both members of the group store a share, neither stores what the
    other did, and together they store every reading taken, once."""
    first, second = pipeline.make_collector("c1"), pipeline.make_collector("c2")
    first.start()
    second.start()
    pipeline.setup.gateway.start()
    pipeline.wait_flowing(40 * READINGS_PER_CYCLE, timeout_s=60)
    stored = pipeline.finish_and_check()
    first.stop()
    second.stop()
    shares = []
    for proc in (first, second):
        match = re.search(
            r"stopped: stored (\d+) readings \((\d+) duplicates\)", proc.log.read_text()
        )
        assert match is not None, proc.log.read_text()[-2000:]
        shares.append(int(match.group(1)))
    assert all(share > 0 for share in shares), shares  # each took part of the stream
    assert sum(shares) == stored, (shares, stored)  # together: everything, once


@pytest.mark.e2e
def test_a_retired_collector_stores_its_queued_share_and_leaves_the_group(
    pipeline: Pipeline,
) -> None:
    """Stopping a member is not leaving: Mosquitto goes on queueing its share. `coldchain
    collector retire` stores that queue and ends the session; the survivor then gets
    everything, and every reading taken is stored once."""
    first, second = pipeline.make_collector("c1"), pipeline.make_collector("c2")
    first.start()
    second.start()
    pipeline.setup.gateway.start()
    pipeline.wait_flowing(20 * READINGS_PER_CYCLE)
    second.stop()
    pipeline.wait_flowing(10 * READINGS_PER_CYCLE, timeout_s=60)
    time.sleep(1.0)  # its share queues at the broker meanwhile
    retired = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "collector",
            "retire",
            "--config",
            str(second.config),
            "--quiet-s",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert retired.returncode == 0, retired.stdout + retired.stderr
    assert "retired" in retired.stdout
    queued = int(re.search(r"(\d+) queued messages stored", retired.stdout).group(1))  # type: ignore[union-attr]
    assert queued > 0  # what the broker had kept for the stopped member
    pipeline.finish_and_check()  # with one collector left: all of it, once


BAD_PAYLOADS = [
    b"{not json",
    b'{"v": 9, "gateway": "%(gw)s", "site": "%(site)s", "epoch": 1, "seq": 1, "readings": []}',
    b'{"v": 1, "gateway": "%(gw)s", "site": "%(site)s", "epoch": 1, "readings": []}',
    b'{"v": 1, "gateway": "%(gw)s", "site": "%(site)s", "epoch": 1, "seq": 9223372036854775808, '
    b'"readings": [{"sensor": "x.temp", "ts_ms": %(now)d, "q": "ok", "temp_c": 4.0}]}',
    b'{"v": 1, "gateway": "another-gw", "site": "%(site)s", "epoch": 1, "seq": 1, "readings": '
    b'[{"sensor": "x.temp", "ts_ms": %(now)d, "q": "ok", "temp_c": 4.0}]}',
    b'{"v": 1, "gateway": "%(gw)s", "site": "%(site)s", "epoch": 1, "seq": 2, "readings": '
    b'[{"sensor": "x.temp", "ts_ms": 60000, "q": "ok", "temp_c": 4.0}]}',  # a dead clock
]


def test_malformed_messages_are_quarantined_and_good_ones_still_stored(
    pipeline: Pipeline, running_broker: Broker
) -> None:
    collector = pipeline.make_collector("c1")
    collector.start()
    pipeline.setup.gateway.start()
    pipeline.wait_flowing(3 * READINGS_PER_CYCLE)
    gw = pipeline.setup.gw
    now = time.time_ns() // 1_000_000
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.connect("127.0.0.1", running_broker.port)
    client.loop_start()
    topic = f"coldchain/v1/{pipeline.setup.site}/{gw}/readings"
    for payload in BAD_PAYLOADS:
        client.publish(
            topic,
            payload
            % {
                b"gw": gw.encode(),
                b"site": pipeline.setup.site.encode(),
                b"now": now,
            },
            qos=1,
        ).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
    wait_for(
        lambda: store_counts(pipeline.store, gw)["quarantined"] == len(BAD_PAYLOADS),
        30,
        "every bad message in the quarantine",
    )
    pipeline.wait_flowing(5 * READINGS_PER_CYCLE)
    db = sqlite3.connect(pipeline.store)
    reasons = [r for (r,) in db.execute("SELECT reason FROM quarantine ORDER BY id")]
    raws = [bytes(p) for (p,) in db.execute("SELECT payload FROM quarantine ORDER BY id")]
    db.close()
    assert raws[0] == b"{not json"
    for fragment in (
        "not valid JSON",
        "schema version 9",
        "missing required field `seq`",
        "Expected `int` <= 9007199254740991",
        "but the topic says",
        "before 2020",
    ):
        assert any(fragment in r for r in reasons), (fragment, reasons)
    assert collector.running
    pipeline.finish_and_check()


# --------------------------------------------------------------------------- InfluxDB


class VictoriaMetrics:
    """Debian's victoria-metrics: speaks InfluxDB's v2 write API; ours, by PID."""

    def __init__(self, workdir: Path) -> None:
        import shutil
        import subprocess

        binary = shutil.which("victoria-metrics")
        if binary is None:
            raise RuntimeError("victoria-metrics is not installed (Debian package)")
        self.port = free_port()
        self.args = [
            binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={workdir}",
            "-dedup.minScrapeInterval=1ms",
            "-retentionPeriod=100y",
        ]
        self.log = (workdir.parent / "vm.log").open("ab")
        self._subprocess = subprocess
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = self._subprocess.Popen(self.args, stdout=self.log, stderr=self.log)
        wait_for(self._up, 20, "victoria-metrics to listen")

    def _up(self) -> bool:
        try:
            return urllib.request.urlopen(self.url + "/health", timeout=1).status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def count(self, match: str) -> int:
        """Samples stored (after a flush) for series matching ``match``."""
        urllib.request.urlopen(self.url + "/internal/force_flush", timeout=10).read()
        data = urllib.parse.urlencode({"match[]": match, "start": "0"}).encode()
        body = (
            urllib.request.urlopen(self.url + "/api/v1/export", data=data, timeout=30)
            .read()
            .decode()
        )
        import json

        return sum(len(json.loads(line)["values"]) for line in body.splitlines() if line)

    def series(self, match: str) -> dict[str, int]:
        import json

        data = urllib.parse.urlencode({"match[]": match, "start": "0"}).encode()
        body = (
            urllib.request.urlopen(self.url + "/api/v1/export", data=data, timeout=30)
            .read()
            .decode()
        )
        out = {}
        for line in filter(None, body.splitlines()):
            row = json.loads(line)
            out[row["metric"]["__name__"] + "/" + row["metric"]["sensor"]] = len(row["values"])
        return out


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(tmp_path / "vm-data")
    vm.start()
    yield vm
    vm.stop()
    vm.log.close()


def test_influxdb_writer_stores_each_reading_once_across_a_server_outage(
    tmp_path: Path,
    collector_setup: Setup,
    running_broker: Broker,
    victoria: VictoriaMetrics,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup = collector_setup
    monkeypatch.setenv("COLDCHAIN_INFLUX_ORG", "county")
    monkeypatch.setenv("COLDCHAIN_INFLUX_BUCKET", "coldchain")
    monkeypatch.setenv("COLDCHAIN_INFLUX_TOKEN", "test-token")
    config = collector_config(
        tmp_path / "influx.toml",
        running_broker,
        tmp_path / "unused.sqlite",
        f"ci-{unique}",
        f"gi-{unique}",
        setup.site,
        extra_store=f'kind = "influxdb"\nurl = "{victoria.url}"\n'
        f'quarantine_path = "{tmp_path / "quarantine.sqlite"}"',
    )
    collector = CollectorProcess(config, tmp_path / "collector.log")
    match = f'{{__name__=~".*_q_code", gateway="{setup.gw}"}}'
    try:
        collector.start()
        setup.gateway.start()
        wait_for(
            lambda: victoria.count(match) >= 5 * READINGS_PER_CYCLE,
            30,
            "readings in victoria-metrics",
        )
        victoria.stop()  # the store goes away; the collector must hold its acks
        time.sleep(3.0)
        victoria.start()
        setup.gateway.stop()
        taken = outbox_counts(setup.outbox)["taken"]
        try:
            wait_for(
                lambda: victoria.count(match) >= taken,
                60,
                f"all {taken} readings in victoria-metrics",
            )
        except AssertionError:
            per_series = victoria.series(match)
            raise AssertionError(
                f"victoria-metrics has {victoria.count(match)} of {taken}: {per_series}"
            ) from None
        time.sleep(1.0)
        assert victoria.count(match) == taken
        log = collector.log.read_text()
        assert log.count("store unavailable") == 1 and "store back" in log
    finally:
        collector.stop()


def test_influxdb_writer_writing_the_same_batch_twice_keeps_one_point_per_reading(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    from coldchain.wire import Quality, Reading, ReadingsBatch
    from collector.influx_store import InfluxStore
    from collector.store import Incoming

    now = time.time_ns() // 1_000_000
    batch = [
        Incoming(
            ReadingsBatch(
                v=1,
                gateway="dup-gw",
                site="s",
                epoch=1,
                seq=1,
                readings=[
                    Reading(
                        sensor=f"p{i}.temp", ts_ms=now - 1000 * i, q=Quality.OK, temp_c=-18.0 - i
                    )
                    for i in range(20)
                ],
            ),
            now,
        )
    ]
    store = InfluxStore(
        url=victoria.url,
        org="county",
        bucket="coldchain",
        token="t",
        quarantine_path=tmp_path / "q.sqlite",
    )
    try:
        store.write(batch, [])
        store.write(batch, [])  # QoS 1 redelivery of the same message
    finally:
        store.close()
    match = '{__name__="temp_c_value", gateway="dup-gw"}'
    # the newest sample shows in victoria-metrics' export a moment after the write
    wait_for(lambda: victoria.count(match) >= 20, 15, "the 20 readings")
    time.sleep(1.0)
    assert victoria.count(match) == 20


def test_influxdb_collectors_sharing_a_side_file_publish_one_watermark(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    """Two collectors of one group, each with its share of a gateway's messages: the
    watermark comes from the side file they share, so it covers both shares."""
    from coldchain.wire import Quality, Reading, ReadingsBatch
    from collector.influx_store import InfluxStore
    from collector.store import Incoming

    now = time.time_ns() // 1_000_000

    def message(seq: int) -> Incoming:
        reading = Reading(sensor="a.temp", ts_ms=now + seq, q=Quality.OK, temp_c=-18.0)
        return Incoming(
            ReadingsBatch(
                v=1, gateway="wm-gw", site="s", epoch=7, seq=seq, readings=[reading], held_from=1
            ),
            now,
        )

    side = tmp_path / "side.sqlite"
    stores = [
        InfluxStore(url=victoria.url, org="o", bucket="b", token="t", quarantine_path=side)
        for _ in range(2)
    ]
    try:
        stores[0].write([message(1), message(3)], [])
        assert stores[1].watermarks([("wm-gw", 7)]) == {("wm-gw", 7): {"readings": 1}}
        result = stores[1].write([message(2), message(4), message(3)], [])
        assert result.messages_duplicate == 1  # the copy of 3
        assert stores[0].watermarks([("wm-gw", 7)]) == {("wm-gw", 7): {"readings": 4}}
    finally:
        for store in stores:
            store.close()
