"""Collector throughput against the raw broker rate, on one machine and one broker.

(a) raw: a plain paho-mqtt publisher sends N readings batches (QoS 1) to a plain
    paho-mqtt subscriber (QoS 1); readings per second delivered.
(b) collector: the same stream, published live into `coldchain collector run` (SQLite
    store); readings per second stored (committed and acknowledged).
(c) catch-up: a one-hour backlog of 100 sensors at one reading per second (360,000
    readings, in gateway backlog chunks of 500) queued at the broker while the collector
    is down; readings per second stored once it starts, and how long the hour takes.
(d) the stream of (b) again, into a store holding a week of 100 other sensors at one
    reading a minute, not yet compacted: the collector compacts it between batches
    meanwhile (issue 18); readings per second stored, against (b), and how many
    sensor-days it compacted while it did.

Usage: python bench/collector_rate.py [--messages 2000] [--readings-per-message 100]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from coldchain import wire, wire_batch
from coldchain.wire import Quality, Reading, Stream
from simulator.broker import LocalBroker, stop_process


def batches(
    gateway: str, site: str, n: int, sensors: int, seconds_per_message: int = 1
) -> list[tuple[str, bytes]]:
    """n readings batches; each holds `seconds_per_message` seconds of `sensors` sensors
    at one reading per second (a live poll, or a gateway backlog chunk)."""
    t0 = time.time_ns() // 1_000_000 - n * seconds_per_message * 1000
    topic = wire.topic(site, gateway, Stream.READINGS)
    out = []
    for i in range(n):
        readings = [
            wire.encode(
                Reading(
                    sensor=f"probe-{s:03d}.temp",
                    ts_ms=t0 + (i * seconds_per_message + k) * 1000,
                    q=Quality.OK,
                    temp_c=-18.0 + (s % 10) / 10,
                )
            )
            for k in range(seconds_per_message)
            for s in range(sensors)
        ]
        out.append(
            (
                topic,
                wire_batch.assemble(
                    Stream.READINGS, gateway=gateway, site=site, epoch=1, seq=i + 1, bodies=readings
                ),
            )
        )
    return out


def publish_all(port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


def raw_rate(port: int, messages: list[tuple[str, bytes]], per: int) -> float:
    got = threading.Event()
    count = [0]

    def on_message(*_: object) -> None:
        count[0] += 1
        if count[0] == len(messages):
            got.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe(messages[0][0], qos=1)
    sub.loop_start()
    time.sleep(0.5)
    started = time.monotonic()
    publish_all(port, messages)
    if not got.wait(120):
        raise SystemExit(f"raw subscriber got {count[0]} of {len(messages)}")
    elapsed = time.monotonic() - started
    sub.loop_stop()
    sub.disconnect()
    return len(messages) * per / elapsed


def stored(db: Path, gateway: str) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        if not con.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='readings'").fetchone()[
            0
        ]:
            return 0
        return int(
            con.execute("SELECT COUNT(*) FROM readings WHERE gateway = ?", (gateway,)).fetchone()[0]
        )
    finally:
        con.close()


def wait_stored(db: Path, gateway: str, total: int, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while stored(db, gateway) < total:
        if time.monotonic() > deadline:
            raise SystemExit(f"collector stored {stored(db, gateway)} of {total}")
        time.sleep(0.05)
    return time.monotonic()


def start_collector(
    work: Path,
    port: int,
    name: str,
    store: str | None = None,
    group: str = "bench",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`coldchain collector run` in a subprocess (default store: SQLite in ``work``)."""
    config = work / f"{name}.toml"
    store = store or f'kind = "sqlite"\npath = "{work / "bench.sqlite"}"'
    config.write_text(
        f'[collector]\nid = "{name}"\ngroup = "{group}"\n[mqtt]\nport = {port}\n[store]\n{store}\n'
    )
    log = (work / f"{name}.log").open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "--log-level",
            "WARNING",
            "collector",
            "run",
            "--config",
            str(config),
        ],
        stdout=log,
        stderr=log,
        env={**os.environ, **(env or {})},
    )


def prefill(path: Path, sensors: int, days: int) -> int:
    """A store holding ``days`` settled days of ``sensors`` sensors at one reading a
    minute, as rows (a collector that has not compacted yet); returns the sensor-days."""
    from coldchain.wire import ReadingsBatch
    from collector.sqlite_store import SqliteStore
    from collector.store import Incoming

    day_ms = 86_400_000
    first = (time.time_ns() // 1_000_000 // day_ms - days - 1) * day_ms
    store = SqliteStore(path)
    for seq, day in enumerate(range(first, first + days * day_ms, day_ms), start=1):
        readings = [
            Reading(sensor=f"room-{s:03d}.temp", ts_ms=t, q=Quality.OK,
                    temp_c=-18.0 + (t // 60_000 % 17) / 10)
            for s in range(sensors)
            for t in range(day, day + day_ms, 60_000)
        ]  # fmt: skip
        for part in range(0, len(readings), 5000):
            msg = ReadingsBatch(
                v=wire.SCHEMA_VERSION, gateway="old-gw", site="bench", epoch=1,
                seq=seq * 1000 + part // 5000, readings=readings[part : part + 5000],
            )  # fmt: skip
            store.write([Incoming(msg, day + day_ms)], [])
    store.close()
    return sensors * days


def chunk_rows(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return int(con.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--readings-per-message", type=int, default=100)
    parser.add_argument("--backlog-hours", type=float, default=1.0)
    args = parser.parse_args()
    per = args.readings_per_message
    work = Path(tempfile.mkdtemp(prefix="coldchain-bench-"))
    broker = LocalBroker(work / "broker")
    broker.start()
    collector: subprocess.Popen[bytes] | None = None
    try:
        stream = batches("raw-gw", "bench", args.messages, per)
        raw = raw_rate(broker.port, stream, per)

        collector = start_collector(work, broker.port, "bench-collector")
        time.sleep(2.0)  # started and subscribed
        live = batches("live-gw", "bench", args.messages, per)
        started = time.monotonic()
        publish_all(broker.port, live)
        done = wait_stored(work / "bench.sqlite", "live-gw", len(live) * per, 300)
        collector_rate = len(live) * per / (done - started)
        stop_process(collector)

        # (c) one hour of 100 sensors, queued in the session while the collector is away
        chunks = int(args.backlog_hours * 3600 / 5)
        backlog = batches("truck-gw", "bench", chunks, 100, seconds_per_message=5)
        publish_all(broker.port, backlog)
        started = time.monotonic()
        collector = start_collector(work, broker.port, "bench-collector")
        done = wait_stored(work / "bench.sqlite", "truck-gw", chunks * 500, 900)
        catch_up = chunks * 500 / (done - started)
        stop_process(collector)

        # (d) the live stream while the collector compacts a week of 100 other sensors
        week = work / "week.sqlite"
        settled = prefill(week, sensors=100, days=7)
        # a group of its own: the stopped collector of (b) and (c) keeps its session, and
        # the broker would queue it its share of a shared subscription
        collector = start_collector(
            work, broker.port, "bench-compacting", group="bench-d",
            store=f'kind = "sqlite"\npath = "{week}"\ncompact_every_s = 1',
        )  # fmt: skip
        time.sleep(2.0)  # started, subscribed, and its first pass under way
        again = batches("live-gw-2", "bench", args.messages, per)
        started = time.monotonic()
        publish_all(broker.port, again)
        done = wait_stored(week, "live-gw-2", len(again) * per, 300)
        compacting_rate = len(again) * per / (done - started)
        compacted = chunk_rows(week)
        stop_process(collector)
    finally:
        if collector is not None and collector.poll() is None:
            stop_process(collector)  # a run cut short leaves no collector behind
        broker.stop()

    print(f"payload: readings batches of {per} readings, {len(stream[0][1])} bytes, QoS 1")
    print(f"(a) raw broker, paho publisher -> paho subscriber : {raw:10,.0f} readings/s")
    print(f"(b) collector into SQLite (stored, acknowledged)  : {collector_rate:10,.0f} readings/s")
    print(
        f"    ratio collector / raw broker                  : {collector_rate / raw:10.2f} "
        f"(target >= 0.5)"
    )
    print(
        f"(d) collector into SQLite while it compacts        : {compacting_rate:10,.0f} "
        f"readings/s ({compacting_rate / collector_rate:.2f} of (b)); {compacted} of "
        f"{settled} sensor-days compacted meanwhile"
    )
    backlog_readings = args.backlog_hours * 3600 * 100
    seconds = backlog_readings / catch_up
    speedup = args.backlog_hours * 3600 / seconds
    print(
        f"(c) catch-up after {args.backlog_hours:g} h of 100 sensors at 1/s "
        f"({int(backlog_readings):,} readings): {catch_up:,.0f} readings/s, "
        f"{seconds:.0f} s for the backlog ({speedup:.0f}x real time)"
    )


if __name__ == "__main__":
    main()
