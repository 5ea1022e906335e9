"""Scaling out on existing engines: one and two collectors on one shared subscription,
into SQLite and into InfluxDB's v2 write API (served here by Debian's victoria-metrics,
the InfluxDB stand-in this machine has), same broker, same stream.

For each store and each number of collectors: N readings batches (QoS 1, 100 readings
each) published at once; readings per second from the first publish until the store
holds them all (stored and acknowledged). Baseline: one collector into the same store,
in the same run.

Usage: python bench/scale_out.py [--messages 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from collector_rate import batches, publish_all, start_collector

from simulator.broker import LocalBroker, free_port, stop_process

PER = 100


class Victoria:
    def __init__(self, work: Path) -> None:
        binary = shutil.which("victoria-metrics")
        if binary is None:
            raise SystemExit("victoria-metrics is not installed (apt-get install victoria-metrics)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                binary,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={work / 'vm'}",
                "-dedup.minScrapeInterval=1ms",
                "-retentionPeriod=100y",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("victoria-metrics did not start") from None
                time.sleep(0.1)

    def count(self, gateway: str) -> int:
        urllib.request.urlopen(self.url + "/internal/force_flush", timeout=10).read()
        data = urllib.parse.urlencode(
            {"match[]": f'temp_c_value{{gateway="{gateway}"}}', "start": "0"}
        ).encode()
        body = urllib.request.urlopen(self.url + "/api/v1/export", data=data, timeout=60).read()
        return sum(len(json.loads(line)["values"]) for line in body.splitlines() if line)

    def stop(self) -> None:
        stop_process(self.proc)


def sqlite_count(db: Path, gateway: str) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = con.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='readings'").fetchone()
        if not row[0]:
            return 0
        return int(
            con.execute("SELECT COUNT(*) FROM readings WHERE gateway = ?", (gateway,)).fetchone()[0]
        )
    finally:
        con.close()


def collector(work: Path, port: int, name: str, group: str, store: str) -> subprocess.Popen[bytes]:
    # victoria-metrics takes any org, bucket and token
    influx = {
        "COLDCHAIN_INFLUX_ORG": "county",
        "COLDCHAIN_INFLUX_BUCKET": "coldchain",
        "COLDCHAIN_INFLUX_TOKEN": "bench-token",
    }
    return start_collector(work, port, name, store=store, group=group, env=influx)


def run(
    work: Path,
    port: int,
    n: int,
    store: str,
    count: Callable[[str], int],
    label: str,
    messages: int,
) -> float:
    # a group per run: a stopped member's persistent session would keep its share
    procs = [
        collector(work, port, f"{label}-{n}-c{i}", f"scale-{label}-{n}", store) for i in range(n)
    ]
    try:
        time.sleep(2.5)  # started and subscribed
        gateway = f"{label}-{n}"
        stream = batches(gateway, "bench", messages, PER)
        total = messages * PER
        started = time.monotonic()
        publish_all(port, stream)
        deadline = started + float(os.environ.get("SCALE_TIMEOUT_S", "600"))
        while count(gateway) < total:
            if time.monotonic() > deadline:
                raise SystemExit(f"{label} x{n}: stored {count(gateway)} of {total}")
            time.sleep(0.25)
        return total / (time.monotonic() - started)
    finally:
        for proc in procs:
            stop_process(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coldchain-scale-"))
    broker = LocalBroker(work / "broker")
    broker.start()
    victoria = Victoria(work)
    db = work / "scale.sqlite"
    results: dict[tuple[str, int], float] = {}
    try:
        for label, store, count in (
            ("sqlite", f'kind = "sqlite"\npath = "{db}"', lambda g: sqlite_count(db, g)),
            (
                "influxdb",
                f'kind = "influxdb"\nurl = "{victoria.url}"\n'
                f'quarantine_path = "{work / "quarantine.sqlite"}"',
                victoria.count,
            ),
        ):
            for n in (1, 2):
                results[(label, n)] = run(work, broker.port, n, store, count, label, args.messages)
    finally:
        victoria.stop()
        broker.stop()
    print(f"{args.messages * PER:,} readings per run, batches of {PER}, QoS 1, one broker")
    for label in ("sqlite", "influxdb"):
        one, two = results[(label, 1)], results[(label, 2)]
        print(
            f"{label:9}: 1 collector {one:9,.0f} readings/s   2 collectors {two:9,.0f} "
            f"readings/s   ratio {two / one:4.2f}"
        )


if __name__ == "__main__":
    main()
