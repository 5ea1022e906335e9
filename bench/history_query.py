"""History through the API, on the embedded store (issue 18): one sensor, one reading a
minute for a year (525,600 readings) in two real SQLite readings stores filled with the
same readings: as they came (every reading a row of ``readings``, the store before
compaction: the baseline) and compacted as the collector keeps it (each settled day a
chunk of compressed columns with its 1-minute roll-ups, the last day still as rows).
The readings are what a probe gives: a random walk at 0.1 °C, times off the minute by up
to 300 ms, arrivals 50 to 800 ms later.

Prints for both: bytes per reading on disk, the p50 and p95 of ``/api/series`` for 1
hour, 24 hours, 30 days and a year through the API in its own process (600 points, as
the chart pages ask; whole-hour buckets from the hourly roll-ups), the same buckets
from the store in-process, a 30-day scan of every reading (what a report reads), and
the compaction's cost per reading.

Targets (issue 18): at most 20 bytes per reading on disk; p95 under 100 ms for 30 days
and for a year.

Usage: python bench/history_query.py [--days 365] [--requests 30]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from alerts.db import make_engine, transaction, upgrade
from alerts.repo.users import Role, create_user
from coldchain import wire
from coldchain.wire import Quality, Reading, ReadingsBatch
from collector.buckets import bucket_width
from collector.sqlite_store import SqliteStore
from collector.store import Incoming
from simulator.broker import LocalBroker, free_port

MIN = 60_000
DAY = 86_400_000
PASSWORD = "Yak-Meadow-417-quiet"
RANGES = {"1 h": 3_600_000, "24 h": DAY, "30 d": 30 * DAY, "1 y": 365 * DAY}


def year(days: int, end_ms: int) -> list[ReadingsBatch]:
    """The readings, a day a message (seeded: both stores get the same)."""
    rnd = random.Random(18)
    value, out = -18.0, list[ReadingsBatch]()
    first = end_ms - days * DAY
    for day in range(first, end_ms, DAY):
        readings = []
        for t in range(day, day + DAY, MIN):
            value = round(min(-15.0, max(-21.0, value + rnd.choice((-0.1, 0.0, 0.0, 0.1)))), 1)
            readings.append(
                Reading(sensor="cr1-ctrl.air", ts_ms=t + rnd.randint(0, 300), q=Quality.OK,
                        temp_c=value)
            )  # fmt: skip
        out.append(
            ReadingsBatch(v=wire.SCHEMA_VERSION, gateway="store-gw", site="county-store",
                          epoch=1, seq=len(out) + 1, readings=readings)
        )  # fmt: skip
    return out


def fill(path: Path, batches: list[ReadingsBatch], *, compact: bool) -> float:
    """Write the batches as the collector does (arrivals 50-800 ms after each reading's
    time: the message's time); with ``compact``, each day's settled days are compacted
    after it, as the collector's upkeep does. Returns the seconds spent compacting."""
    rnd = random.Random(7)
    store = SqliteStore(path)
    compacting = 0.0
    for msg in batches:
        store.write([Incoming(msg, msg.readings[-1].ts_ms + rnd.randint(50, 800))], [])
        if compact:
            t0 = time.perf_counter()
            for unit in list(store.compaction_plan(msg.readings[0].ts_ms)):
                store.compact_day(*unit)
            compacting += time.perf_counter() - t0
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return compacting


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coldchain-history-"))
    end = time.time_ns() // 1_000_000 // DAY * DAY
    batches = year(args.days, end)
    count = sum(len(b.readings) for b in batches)
    stores = {"as they came": work / "rows.sqlite", "compacted": work / "compact.sqlite"}
    sizes: dict[str, float] = {}
    for name, path in stores.items():
        started = time.monotonic()
        compacting = fill(path, batches, compact=name == "compacted")
        took = time.monotonic() - started
        size = sum(p.stat().st_size for p in work.glob(path.name + "*"))
        sizes[name] = size / count
        cost = f"; compaction {compacting / count * 1e6:.1f} us a reading" if compacting else ""
        print(f"store {name:>12}: {count} readings of one sensor written in {took:.0f} s"
              f"{cost}; {size / count:5.1f} B/reading on disk ({size / 2**20:.1f} MiB); a year "
              f"of 1,000 sensors: {size / count * 525_600 * 1000 / 2**30:.1f} GiB")  # fmt: skip
    ratio = sizes["as they came"] / sizes["compacted"]
    verdict = "met" if sizes["compacted"] <= 20 else "NOT met"
    print(f"compacted: {ratio:.1f}x smaller (target <= 20 B/reading: {verdict})")
    for name, path in stores.items():
        in_process(name, path, end, args)
    url = f"sqlite:///{work / 'alerts.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    with transaction(engine) as s:
        create_user(s, "bench.admin", PASSWORD, Role.ADMIN, actor="bench")
    engine.dispose()
    for name, path in stores.items():
        through_api(name, path, work, end, args)


def in_process(name: str, path: Path, end: int, args: argparse.Namespace) -> None:
    store = SqliteStore(path)
    try:
        for label, span in RANGES.items():
            if span > args.days * DAY:
                continue
            width = bucket_width(span, 600)
            times = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                store.buckets("store-gw", "cr1-ctrl.air", end - span, end, width)
                times.append((time.perf_counter() - t0) * 1000)
            p50, p95 = percentiles(times[1:])
            print(f"store {name:>12}, buckets {label:>5}: first {times[0]:6.1f} ms, then p50 "
                  f"{p50:6.1f} ms  p95 {p95:6.1f} ms (width {width // MIN} min)")  # fmt: skip
        span = min(30, args.days) * DAY
        t0 = time.perf_counter()
        n = sum(1 for _ in store.readings(start_ms=end - span, end_ms=end, sensor="cr1-ctrl.air"))
        took = (time.perf_counter() - t0) * 1000
        print(f"store {name:>12}, every reading of 30 d: {n} in {took:.0f} ms")
    finally:
        store.close()


def through_api(
    name: str, readings_db: Path, work: Path, end: int, args: argparse.Namespace
) -> None:
    url = f"sqlite:///{work / 'alerts.sqlite'}"
    broker = LocalBroker(work / "broker")
    broker.start()
    port = free_port()
    env = {
        **os.environ,
        "COLDCHAIN_DB_URL": url,
        "COLDCHAIN_READINGS_DB": str(readings_db),
        "COLDCHAIN_PUBLIC_URL": "https://trace.county.test",
        "COLDCHAIN_MQTT__PORT": str(broker.port),
    }
    # the API in a process of its own, as it runs (a client in the server's own process
    # would measure their contention for the interpreter, not the API)
    api = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "api", "--port", str(port)],
        env=env,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start") from None
            time.sleep(0.2)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            token = client.post(
                "/api/auth/login", json={"username": "bench.admin", "password": PASSWORD}
            ).json()["token"]
            client.headers["Authorization"] = f"Bearer {token}"
            for label, span in RANGES.items():
                if span > args.days * DAY:
                    continue
                params: dict[str, str | int] = {"gateway": "store-gw", "sensor": "cr1-ctrl.air",
                          "from_ms": end - span, "to_ms": end, "points": 600}  # fmt: skip
                times, rows = [], 0
                for _ in range(args.requests):
                    t0 = time.perf_counter()
                    answer = client.get("/api/series", params=params)
                    answer.raise_for_status()
                    times.append((time.perf_counter() - t0) * 1000)
                    rows = len(answer.json()["rows"])
                first, times = times[0], times[1:]  # the first may make hourly roll-ups
                p50, p95 = percentiles(times)
                verdict = "" if span < 30 * DAY else (
                    f" (target p95 < 100 ms: {'met' if p95 < 100 else 'NOT met'})"
                )  # fmt: skip
                print(f"API {name:>12} /api/series {label:>5}: first {first:6.1f} ms, then p50 "
                      f"{p50:6.1f} ms  p95 {p95:6.1f} ms, {rows} rows{verdict}")  # fmt: skip
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(20)
        broker.stop()


if __name__ == "__main__":
    main()
