"""What the end-to-end acknowledgement costs: the same load, old design and new, one run.

A Mosquitto of its own, simulated Modbus devices (10 devices x 10 registers), a real
collector (``coldchain collector run``, SQLite store) and a real gateway
(``coldchain gateway run``), measured in rounds that alternate the gateway's
``confirm`` setting:

- ``broker``: the old design, a PUBACK frees a message;
- ``store``: the gateway keeps each message until the collector's stored watermark
  covers it, and the collector publishes that watermark after each commit.

For each round: the gateway's and the collector's CPU share of one core over the window
(psutil), the readings stored per second, and the outbox rows still unconfirmed at the
end; then the ratio store / broker of the medians. The target: under 10 % more.

Usage: python bench/zero_loss_cost.py [--seconds 30] [--rounds 2] [--interval-s 0.2]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from simulator.broker import LocalBroker, free_ports, stop_process

PROFILE = "multi_channel_temp_10"
HERE = Path(__file__).parent


def cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ops.cli", "--log-level", "WARNING", *args])


def stored(db: Path, gateway: str) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(
            con.execute("SELECT COUNT(*) FROM readings WHERE gateway = ?", (gateway,)).fetchone()[0]
        )
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def one_round(
    work: Path, broker: LocalBroker, ports: list[int], mode: str, n: int, args: argparse.Namespace
) -> dict[str, float]:
    here = work / f"{mode}-{n}"
    here.mkdir()
    store = here / "store.sqlite"
    gateway = f"bench-{mode}-{n}"
    (here / "collector.toml").write_text(f"""
[collector]
id = "bench-collector-{mode}-{n}"
# a group of its own: the previous round's collector left its session behind
group = "bench-{mode}-{n}"
sites = ["bench"]
[mqtt]
port = {broker.port}
[store]
kind = "sqlite"
path = "{store}"
""")
    buses = "".join(
        f"""
[[buses]]
kind = "modbus_tcp"
name = "dev{i}"
host = "127.0.0.1"
port = {port}
interval_s = {args.interval_s}
[[buses.devices]]
id = "tm{i}"
profile = "{PROFILE}"
"""
        for i, port in enumerate(ports)
    )
    (here / "gateway.toml").write_text(f"""
[gateway]
id = "{gateway}"
site = "bench"
[mqtt]
port = {broker.port}
[outbox]
path = "outbox.sqlite"
confirm = "{mode}"
{buses}""")
    collector = cli("collector", "run", "--config", str(here / "collector.toml"))
    time.sleep(2)
    gw = cli("gateway", "run", "--config", str(here / "gateway.toml"))
    try:
        time.sleep(5)  # warm-up: imports, connections, first polls
        procs = {"gateway": psutil.Process(gw.pid), "collector": psutil.Process(collector.pid)}
        before = {name: cpu_s(p) for name, p in procs.items()}
        stored_before, started = stored(store, gateway), time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        result = {
            f"{name}_cpu_pct": 100 * (cpu_s(p) - before[name]) / elapsed
            for name, p in procs.items()
        }
        result["stored_per_s"] = (stored(store, gateway) - stored_before) / elapsed
        con = sqlite3.connect(f"file:{here / 'outbox.sqlite'}?mode=ro", uri=True, timeout=10)
        result["outbox_rows"] = float(
            con.execute("SELECT COALESCE(SUM(n), 0) FROM sealed").fetchone()[0]
        )
        con.close()
        return result
    finally:
        stop_process(gw)
        stop_process(collector)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--interval-s", type=float, default=0.2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coldchain-bench-"))
    broker = LocalBroker(work / "broker")
    broker.start()
    ports = free_ports(args.devices)
    sim = subprocess.Popen(
        [sys.executable, str(HERE / "sim_devices.py"), PROFILE, *map(str, ports)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sim.stdout is not None
    if sim.stdout.readline().strip() != "ready":
        raise SystemExit("simulated devices did not start")
    results: dict[str, list[dict[str, float]]] = {"broker": [], "store": []}
    try:
        for n in range(args.rounds):
            for mode in ("broker", "store"):
                results[mode].append(one_round(work, broker, ports, mode, n, args))
                r = results[mode][-1]
                print(
                    f"round {n + 1} confirm={mode:6}  gateway {r['gateway_cpu_pct']:5.2f} % "
                    f"collector {r['collector_cpu_pct']:5.2f} % of a core  stored "
                    f"{r['stored_per_s']:7.1f} readings/s  unconfirmed at the end "
                    f"{r['outbox_rows']:.0f} rows",
                    flush=True,
                )
    finally:
        stop_process(sim)
        broker.stop()
    print(
        f"\nload: {args.devices} devices x 10 registers every {args.interval_s} s, "
        f"{args.seconds:.0f} s windows, {args.rounds} rounds each (medians)"
    )
    for key, label in (
        ("gateway_cpu_pct", "gateway CPU % of a core"),
        ("collector_cpu_pct", "collector CPU % of a core"),
        ("stored_per_s", "readings stored per s"),
    ):
        old = statistics.median(r[key] for r in results["broker"])
        new = statistics.median(r[key] for r in results["store"])
        ratio = new / old if old else float("nan")
        print(f"{label:28} broker {old:8.2f}   store {new:8.2f}   store/broker {ratio:5.2f}")


if __name__ == "__main__":
    main()
