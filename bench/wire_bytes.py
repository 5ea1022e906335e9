"""Bytes on the wire per reading, version 1 JSON against the compact version 2, side by
side on one broker, at the reference load: 10 Modbus TCP devices x 10 registers polled
each second (issue 17).

Runs the simulated devices and a Mosquitto of its own, then the gateway twice (``coldchain
gateway run``, ``[outbox] encoding = "json"``, then ``"compact"``), each for the same
window. A subscriber counts the readings messages, their payload bytes and the readings
they carry (decoded as a collector decodes them); the MQTT PUBLISH packet's own bytes
(fixed header, topic, packet id, properties) are added for the on-the-wire figure. The
gateway's CPU is measured for each encoding (psutil).

Reference: thingsboard-gateway 3.8.5 sends about 14 bytes per value at this load,
measured side by side with ours on one broker on this kind of machine (our version 1:
about 66). Target: at most half of it, 7 bytes per reading, with the CPU no worse.

Usage: python bench/wire_bytes.py [--seconds 30] [--devices 10]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from gateway_poll import PROFILE, bus_config, measure
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from coldchain import wire
from simulator.broker import LocalBroker, free_ports

THINGSBOARD_BYTES_PER_VALUE = 14.0
HERE = Path(__file__).parent


@dataclass
class Count:
    messages: int = 0
    payload: int = 0
    packets: int = 0
    readings: int = 0


def publish_packet_bytes(topic: str, payload: int) -> int:
    """An MQTT 5 PUBLISH at QoS 1 with no properties: fixed header, remaining length,
    topic, packet id, property length, payload."""
    remaining = 2 + len(topic.encode()) + 2 + 1 + payload
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16_384 else 3
    return 1 + length_bytes + remaining


def run(
    encoding: str, args: argparse.Namespace, broker: LocalBroker, ports: list[int]
) -> tuple[Count, float]:
    work = Path(tempfile.mkdtemp(prefix=f"coldchain-wire-{encoding}-"))
    gateway = f"bench-{encoding}"
    buses = bus_config(ports, 1.0)
    config = work / "gateway.toml"
    config.write_text(f"""
[gateway]
id = "{gateway}"
site = "bench"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
[outbox]
path = "outbox.sqlite"
encoding = "{encoding}"
confirm = "broker"
{buses}""")
    count, lock, counting = Count(), threading.Lock(), threading.Event()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if not counting.is_set() or not msg.topic.endswith("/readings"):
            return
        batch = wire.decode(wire.Stream.READINGS, bytes(msg.payload))
        with lock:
            count.messages += 1
            count.payload += len(msg.payload)
            count.packets += publish_packet_bytes(msg.topic, len(msg.payload))
            count.readings += len(batch.readings)  # type: ignore[union-attr]

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe([(f"coldchain/v1/bench/{gateway}/readings", 1)])
    sub.loop_start()
    gw = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "gateway", "run",
         "--config", str(config)]
    )  # fmt: skip
    try:
        time.sleep(5)  # warm-up: imports, connections, first polls
        counting.set()
        cpu, _rss, _threads = measure(psutil.Process(gw.pid), args.seconds)
        counting.clear()
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(20)
        sub.loop_stop()
        sub.disconnect()
    return count, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--devices", type=int, default=10)
    args = parser.parse_args()
    broker = LocalBroker(Path(tempfile.mkdtemp(prefix="coldchain-wire-broker-")))
    broker.start()
    ports = free_ports(args.devices)
    sim = subprocess.Popen(
        [sys.executable, str(HERE / "sim_devices.py"), PROFILE, *map(str, ports)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sim.stdout is not None
    try:
        if sim.stdout.readline().strip() != "ready":
            raise SystemExit("simulated devices did not start")
        results = {enc: run(enc, args, broker, ports) for enc in ("json", "compact")}
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(20)
        broker.stop()
    print(
        f"load: {args.devices} Modbus TCP devices x 10 registers, poll every 1 s, "
        f"{args.seconds:g} s per encoding, one broker"
    )
    per: dict[str, float] = {}
    for enc, (c, cpu) in results.items():
        per[enc] = c.payload / max(c.readings, 1)
        print(
            f"{enc:<8}: {c.readings} readings in {c.messages} messages; "
            f"{per[enc]:5.1f} B/reading payload, {c.packets / max(c.readings, 1):5.1f} B/reading "
            f"as MQTT packets; {c.readings / max(c.messages, 1):.0f} readings/message; "
            f"gateway CPU {cpu:.2f} % of one core"
        )
    (_, cpu_json), (_, cpu_compact) = results["json"], results["compact"]
    cpu_ratio = cpu_compact / max(cpu_json, 0.01)
    print(f"compact/json: bytes x{per['compact'] / per['json']:.3f}, CPU x{cpu_ratio:.2f}")
    for enc in ("json", "compact"):
        print(
            f"vs thingsboard-gateway ({THINGSBOARD_BYTES_PER_VALUE:g} B/value): {enc} "
            f"x{per[enc] / THINGSBOARD_BYTES_PER_VALUE:.2f}"
        )
    target = THINGSBOARD_BYTES_PER_VALUE / 2
    print(
        f"target: compact <= {target:g} B/reading -> "
        f"{'met' if per['compact'] <= target else 'NOT met'}; CPU no worse than json -> "
        f"{'met' if cpu_compact <= cpu_json * 1.1 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
