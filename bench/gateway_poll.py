"""Gateway cost at the reference load: 10 Modbus TCP devices x 10 registers, polled at 1 s.

Runs three processes besides itself: the simulated devices, a Mosquitto of its own and
the gateway (``coldchain gateway run``), and measures only the gateway process:

- CPU share of one core and RSS over the window (psutil), threads;
- Modbus requests per poll cycle (counted by the simulated devices) and MQTT readings
  messages per poll cycle (counted by a subscriber);
- the same figures for a baseline on this machine: an idle Python interpreter with the
  same libraries imported, and the naive request count (one request per register);
- ratios against the reference figures for thingsboard-gateway 3.8.5 at this load
  (4.0-4.5 % of one core, 65 MB RSS, one Modbus request per register, one MQTT message
  per device per poll), as measured on this kind of machine.

Usage: python bench/gateway_poll.py [--seconds 60] [--devices 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from simulator.broker import LocalBroker, free_ports

REFERENCE = {"cpu_pct": 4.25, "rss_mb": 65.0}
PROFILE = "multi_channel_temp_10"

HERE = Path(__file__).parent


def measure(proc: psutil.Process, seconds: float) -> tuple[float, float, int]:
    before = proc.cpu_times()
    time.sleep(seconds)
    after = proc.cpu_times()
    cpu = (after.user + after.system) - (before.user + before.system)
    return 100 * cpu / seconds, proc.memory_info().rss / 2**20, proc.num_threads()


def bus_config(ports: list[int], interval_s: float) -> str:
    """The gateway config's buses: one simulated device per port."""
    return "".join(
        f"""
[[buses]]
kind = "modbus_tcp"
name = "dev{i}"
host = "127.0.0.1"
port = {port}
interval_s = {interval_s}
timeout_s = 1.0
[[buses.devices]]
id = "tm{i}"
profile = "{PROFILE}"
"""
        for i, port in enumerate(ports)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--interval-s", type=float, default=1.0)
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

    buses = bus_config(ports, args.interval_s)
    config = work / "gateway.toml"
    config.write_text(f"""
[gateway]
id = "bench-gw"
site = "bench"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
[outbox]
path = "outbox.sqlite"
# the subscriber here is not a collector: nobody publishes a stored watermark
confirm = "broker"
{buses}""")

    messages = [0]
    lock = threading.Lock()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/readings"):
            with lock:
                messages[0] += 1

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    # readings and events, as a collector would (the gateway keeps what nobody takes)
    sub.subscribe(
        [("coldchain/v1/bench/bench-gw/readings", 1), ("coldchain/v1/bench/bench-gw/events", 1)]
    )
    sub.loop_start()

    gw = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "--log-level",
            "WARNING",
            "gateway",
            "run",
            "--config",
            str(config),
        ]
    )
    idle = subprocess.Popen([sys.executable, str(HERE / "idle.py"), str(args.seconds + 15)])
    try:
        time.sleep(5)  # warm-up: imports, connections, first polls
        sim_before = _sim_requests(sim)
        with lock:
            msgs_before = messages[0]
        started = time.monotonic()
        results: dict[str, tuple[float, float, int]] = {}

        def run(name: str, pid: int) -> None:
            results[name] = measure(psutil.Process(pid), args.seconds)

        threads = [
            threading.Thread(target=run, args=("gateway", gw.pid)),
            threading.Thread(target=run, args=("idle", idle.pid)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        requests = _sim_requests(sim) - sim_before
        with lock:
            msgs = messages[0] - msgs_before
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(20)
        idle.kill()
        idle.wait(5)
        sim.send_signal(signal.SIGTERM)
        sim.wait(20)
        sub.loop_stop()
        broker.stop()

    cycles = elapsed / args.interval_s
    requests_per_cycle = requests / cycles
    cpu, rss, threads_n = results["gateway"]
    idle_cpu, idle_rss, idle_threads = results["idle"]
    registers = args.devices * 10
    print(
        f"load: {args.devices} Modbus TCP devices x 10 registers, poll every "
        f"{args.interval_s:g} s, measured {elapsed:.0f} s (python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores)"
    )
    print(f"gateway : CPU {cpu:5.2f} % of one core   RSS {rss:5.1f} MB   threads {threads_n}")
    print(
        f"baseline: CPU {idle_cpu:5.2f} % of one core   RSS {idle_rss:5.1f} MB   threads "
        f"{idle_threads}   (idle python with the same libraries imported)"
    )
    print(
        f"Modbus requests per poll cycle: {requests_per_cycle:.2f} "
        f"(naive one-per-register: {registers}; ratio {requests_per_cycle / registers:.2f})"
    )
    print(
        f"MQTT readings messages per poll cycle: {msgs / cycles:.2f} "
        f"(one per device per poll: {args.devices}; ratio {msgs / cycles / args.devices:.2f})"
    )
    print(
        f"vs thingsboard-gateway 3.8.5 reference: CPU ratio {cpu / REFERENCE['cpu_pct']:.2f}, "
        f"RSS ratio {rss / REFERENCE['rss_mb']:.2f}"
    )
    print(
        f"targets: CPU < 1.5 % -> {'met' if cpu < 1.5 else 'NOT met'}; "
        f"RSS < 60 MB -> {'met' if rss < 60 else 'NOT met'}"
    )


def _sim_requests(sim: subprocess.Popen[str]) -> int:
    """Ask the simulated devices how many requests they have received so far."""
    assert sim.stdout is not None
    sim.send_signal(signal.SIGUSR1)
    return int(sim.stdout.readline())


if __name__ == "__main__":
    main()
