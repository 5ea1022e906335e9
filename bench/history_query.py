"""History through the API, on the embedded store (issue 18): one sensor, one reading a
minute for a year (525,600 readings) in a real SQLite readings store; the API served by
its own process; ``/api/series`` asked for 1 hour, 24 hours, 30 days and a year of it, as the
chart pages ask (600 points). Prints the store's bytes per reading, the p50 and p95 of
each range through the API (whole-hour buckets come from the store's hourly roll-ups;
the first query of a range makes them), and, as the baseline, the same buckets computed
from every reading.

Targets (issue 18): at most 20 bytes per reading on disk; p95 under 100 ms for 30 days
and for a year.

Usage: python bench/history_query.py [--days 365] [--requests 30]
"""

from __future__ import annotations

import argparse
import os
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


def fill(path: Path, days: int, end_ms: int) -> int:
    store = SqliteStore(path)
    start = end_ms - days * DAY
    count, seq = 0, 1
    for chunk_start in range(start, end_ms, 5000 * MIN):
        readings = [
            Reading(
                sensor="cr1-ctrl.air",
                ts_ms=t,
                q=Quality.OK,
                temp_c=round(-19.0 + ((t // MIN) % 37) / 20, 2),
            )
            for t in range(chunk_start, min(chunk_start + 5000 * MIN, end_ms), MIN)
        ]
        batch = ReadingsBatch(
            v=wire.SCHEMA_VERSION, gateway="store-gw", site="county-store", epoch=1, seq=seq,
            readings=readings,
        )  # fmt: skip
        store.write([Incoming(batch, end_ms)], [])
        count, seq = count + len(readings), seq + 1
    store.close()
    return count


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coldchain-history-"))
    readings_db = work / "readings.sqlite"
    end = time.time_ns() // 1_000_000 // MIN * MIN
    started = time.monotonic()
    count = fill(readings_db, args.days, end)
    took = time.monotonic() - started
    store = SqliteStore(readings_db)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(p.stat().st_size for p in work.glob("readings.sqlite*"))
    print(f"store: {count} readings of one sensor in {took:.0f} s; {size / count:.1f} B/reading "
          f"on disk ({size / 2**20:.1f} MiB); a year of 1,000 sensors would be "
          f"{size / count * 525_600 * 1000 / 2**30:.1f} GiB (target <= 20 B/reading: "
          f"{'met' if size / count <= 20 else 'NOT met'})")  # fmt: skip
    for name, span in RANGES.items():
        if span > args.days * DAY:
            continue
        width = bucket_width(span, 600)
        times = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            store.buckets("store-gw", "cr1-ctrl.air", end - span, end, width)
            times.append((time.perf_counter() - t0) * 1000)
        p50, p95 = percentiles(times)
        print(f"store, every reading {name:>5}: p50 {p50:7.1f} ms  p95 {p95:7.1f} ms "
              f"(width {width // MIN} min)")  # fmt: skip
    store.close()

    url = f"sqlite:///{work / 'alerts.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    with transaction(engine) as s:
        create_user(s, "bench.admin", PASSWORD, Role.ADMIN, actor="bench")
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
            for name, span in RANGES.items():
                if span > args.days * DAY:
                    continue
                params = {"gateway": "store-gw", "sensor": "cr1-ctrl.air",
                          "from_ms": end - span, "to_ms": end, "points": 600}  # fmt: skip
                times, rows = [], 0
                for _ in range(args.requests):
                    t0 = time.perf_counter()
                    answer = client.get("/api/series", params=params)
                    times.append((time.perf_counter() - t0) * 1000)
                    rows = len(answer.json()["rows"])
                first, times = times[0], times[1:]  # the first makes the hourly roll-ups
                p50, p95 = percentiles(times)
                verdict = "" if span < 30 * DAY else (
                    f" (target p95 < 100 ms: {'met' if p95 < 100 else 'NOT met'})"
                )  # fmt: skip
                print(f"API /api/series {name:>5}: first {first:6.1f} ms, then p50 {p50:6.1f} "
                      f"ms  p95 {p95:6.1f} ms, {rows} rows{verdict}")  # fmt: skip
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(20)
        broker.stop()
        engine.dispose()


if __name__ == "__main__":
    main()
