"""How fast a gateway notices a dead link and is back once the network heals: the old
MQTT defaults against the new ones, in one run.

A Mosquitto of its own, one simulated Modbus device, and a real gateway process
(``coldchain gateway run``) that reaches the broker through a TCP relay that can be
partitioned: while partitioned it forwards nothing, so bytes wait in the kernel's
buffers as they do behind a dead radio link (TCP retransmits them once
it heals) and the gateway's connection turns half-open, and a new connection goes
unanswered (its SYNs dropped: each attempt times out, then the gateway backs off).
Per round: partition the link,
time until the gateway logs the connection as lost (``notice_s``), keep it partitioned
``--outage-s`` in all, heal it, time until the gateway logs the broker connected again
(``reconnect_s``).

Compared: keepalive 30 s / reconnect backoff up to 60 s (the measurement that opened
issue 13) and the defaults now (``MqttConfig``: keepalive 7 s, backoff up to 5 s).

Usage: python bench/partition.py [--rounds 1] [--outage-s 150]
"""

from __future__ import annotations

import argparse
import contextlib
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from coldchain.settings import MqttConfig
from simulator.broker import LocalBroker, free_port, free_ports, stop_process

HERE = Path(__file__).parent
PROFILE = "multi_channel_temp_10"


class PartitionableRelay:
    """127.0.0.1:port -> 127.0.0.1:target. ``partition()``: the connections open stop
    (nothing read: the kernel buffers what is sent, as TCP does behind a dead link) and
    new ones go unanswered (nothing accepted, the accept queue cut to one: the kernel
    drops further SYNs, so a connect times out as behind a dead link); ``heal()`` undoes
    both."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, free_port()
        self._open = threading.Event()
        self._open.set()
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=64)
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def partition(self) -> None:
        self._open.clear()
        self._listener.listen(0)

    def heal(self) -> None:
        self._listener.listen(64)
        self._open.set()

    def _accept(self) -> None:
        while True:
            self._open.wait()
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            while True:
                self._open.wait()
                ready, _, _ = select.select([src], [], [], 0.2)
                if not ready or not self._open.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def wait_line(log: Path, text: str, count: int, timeout_s: float) -> float:
    """Seconds until ``log`` holds ``count`` lines with ``text`` (inf past the timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if log.exists() and log.read_text().count(text) >= count:
            return time.monotonic() - started
        time.sleep(0.05)
    return float("inf")


def one_round(
    work: Path,
    relay: PartitionableRelay,
    device_port: int,
    name: str,
    keepalive_s: int,
    reconnect_max_s: float,
    args: argparse.Namespace,
) -> tuple[float, float]:
    here = work / name
    here.mkdir()
    (here / "gateway.toml").write_text(f"""
[gateway]
id = "bench-{name}"
site = "bench"
[mqtt]
port = {relay.port}
keepalive_s = {keepalive_s}
reconnect_max_s = {reconnect_max_s}
[outbox]
path = "outbox.sqlite"
confirm = "broker"
require_subscriber = false
[[buses]]
kind = "modbus_tcp"
name = "dev"
host = "127.0.0.1"
port = {device_port}
interval_s = 1
[[buses.devices]]
id = "tm"
profile = "{PROFILE}"
""")
    log = here / "gateway.log"
    with log.open("wb") as out:
        gw = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ops.cli",
                "gateway",
                "run",
                "--config",
                str(here / "gateway.toml"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        if wait_line(log, "broker connected", 1, 30) == float("inf"):
            raise SystemExit(f"{name}: the gateway never connected; see {log}")
        time.sleep(3)
        relay.partition()
        cut = time.monotonic()
        notice_s = wait_line(log, "broker connection lost", 1, args.outage_s)
        time.sleep(max(0.0, args.outage_s - (time.monotonic() - cut)))
        relay.heal()
        reconnect_s = wait_line(log, "broker connected", 2, 180)
        return notice_s, reconnect_s
    finally:
        stop_process(gw)
        relay.heal()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--outage-s", type=float, default=150.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coldchain-bench-"))
    broker = LocalBroker(work / "broker")
    broker.start()
    (device_port,) = free_ports(1)
    sim = subprocess.Popen(
        [sys.executable, str(HERE / "sim_devices.py"), PROFILE, str(device_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sim.stdout is not None
    if sim.stdout.readline().strip() != "ready":
        raise SystemExit("simulated device did not start")
    now = MqttConfig()
    settings = {"old": (30, 60.0), "now": (now.keepalive_s, now.reconnect_max_s)}
    results: dict[str, list[tuple[float, float]]] = {key: [] for key in settings}
    relay = PartitionableRelay(broker.port)
    try:
        for n in range(args.rounds):
            for key, (keepalive_s, backoff_s) in settings.items():
                got = one_round(
                    work, relay, device_port, f"{key}-{n}", keepalive_s, backoff_s, args
                )
                results[key].append(got)
                print(
                    f"round {n + 1} {key:3} keepalive {keepalive_s:2d} s, backoff up to "
                    f"{backoff_s:4.0f} s: noticed after {got[0]:5.1f} s, connected again "
                    f"{got[1]:5.1f} s after the network healed",
                    flush=True,
                )
    finally:
        stop_process(sim)
        broker.stop()
    print(f"\npartitions of {args.outage_s:.0f} s, {args.rounds} round(s) each (medians)")
    for i, label in ((0, "noticed after (s)"), (1, "connected again after (s)")):
        old = statistics.median(r[i] for r in results["old"])
        new = statistics.median(r[i] for r in results["now"])
        print(f"{label:26} old {old:6.1f}   now {new:6.1f}   now/old {new / old:5.2f}")


if __name__ == "__main__":
    main()
