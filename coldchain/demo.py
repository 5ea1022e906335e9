"""``coldchain demo``: the whole edge on embedded defaults, in one command.

It starts a Mosquitto of its own (or uses ``--mqtt-url``), the simulated county, one
gateway per site and per truck (in this process), and a watcher that subscribes to
everything the gateways publish and prints a one-line summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import click
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from coldchain import wire
from coldchain.broker import LocalBroker
from coldchain.sim.county import County
from gateway.app import Gateway
from gateway.config import load_config


@dataclass
class Watcher:
    """Counts what reaches the broker: readings (unique by gateway/epoch/seq), events."""

    host: str
    port: int
    readings: int = 0
    messages: set[tuple[str, int, int]] = field(default_factory=set)
    events: int = 0
    online: dict[str, str] = field(default_factory=dict)
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="coldchain-demo-watch",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_connect = lambda c, *_: c.subscribe("coldchain/v1/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect_async(self.host, self.port)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            parts = wire.parse_topic(msg.topic)
            decoded = wire.decode(parts.stream, bytes(msg.payload))
        except wire.WireError:
            with self._lock:
                self.rejected += 1
            return
        with self._lock:
            if isinstance(decoded, wire.ReadingsBatch):
                key = (decoded.gateway, decoded.epoch, decoded.seq)
                if key not in self.messages:
                    self.messages.add(key)
                    self.readings += len(decoded.readings)
            elif isinstance(decoded, wire.EventsBatch):
                self.events += len(decoded.events)
            elif isinstance(decoded, wire.Status):
                self.online[decoded.gateway] = decoded.state


def parse_mqtt_url(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise click.BadParameter(f"{url!r}: expected mqtt://host:port")
    return parsed.hostname, parsed.port or 1883


async def run_demo(
    *,
    mqtt_url: str | None,
    workdir: Path,
    duration_s: float | None,
    accel: float,
    interval_s: float,
    scripted: bool,
) -> None:
    broker: LocalBroker | None = None
    if mqtt_url:
        host, port = parse_mqtt_url(mqtt_url)
    else:
        broker = LocalBroker(workdir / "broker")
        broker.start()
        host, port = "127.0.0.1", broker.port
    county = County(
        mqtt_host=host,
        mqtt_port=port,
        accel=accel,
        workdir=workdir,
        interval_s=interval_s,
        scripted=scripted,
    )
    gateways: list[Gateway] = []
    tasks: list[asyncio.Task[None]] = []
    watcher = Watcher(host, port)
    try:
        configs = await county.start()
        watcher.start()
        for path in configs:
            gateway = Gateway(load_config(path))
            gateways.append(gateway)
            tasks.append(asyncio.ensure_future(gateway.run()))
        _print_banner(broker, host, port, county, gateways)
        await _summarise(watcher, gateways, duration_s)
    finally:
        for gateway in gateways:
            gateway.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        click.echo("\nfinal: " + _summary(watcher, gateways))
        watcher.stop()
        await county.stop()
        if broker is not None:
            broker.stop()


def _print_banner(
    broker: LocalBroker | None, host: str, port: int, county: County, gateways: list[Gateway]
) -> None:
    echo = click.echo
    echo("coldchain demo: a simulated county cold chain on embedded defaults")
    where = "started by the demo" if broker else "external"
    echo(f"  broker    mqtt://{host}:{port} ({where})")
    echo(f"  watch it  mosquitto_sub -h {host} -p {port} -t 'coldchain/v1/#' -v")
    echo("  devices (any Modbus client can read them, e.g. mbpoll):")
    for line in county.describe():
        echo("  " + line)
    echo("  gateways:")
    for gw in gateways:
        cfg = gw.config
        echo(
            f"    {cfg.gateway.id:<9} site {cfg.gateway.site:<16} "
            f"{len(cfg.buses)} buses, outbox {cfg.outbox.path}"
        )
    echo(
        "  scripted events: cold room 2 door left open (sim min 30-55), truck-02 loses "
        "signal (40-85), cold room 1 compressor fails (90-210)"
    )
    echo("Ctrl-C stops everything.")


def _summary(watcher: Watcher, gateways: list[Gateway]) -> str:
    taken = sum(g.sink.counters.readings_taken for g in gateways)
    acked = sum(g.publisher.counters.acked_readings for g in gateways)
    backlog = sum(g.outbox.sync.stats().pending for g in gateways if not g.outbox.closed)
    online = sum(1 for s in watcher.online.values() if s == "online")
    return (
        f"readings taken {taken}  published {acked}  seen at broker {watcher.readings}  "
        f"backlog {backlog}  events {watcher.events}  quarantined {watcher.rejected}  "
        f"gateways online {online}/{len(gateways)}"
    )


async def _summarise(watcher: Watcher, gateways: list[Gateway], duration_s: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tty = sys.stdout.isatty()
    started = time.monotonic()
    every_s = 1.0 if tty else 10.0
    while not stop.is_set():
        if duration_s is not None and time.monotonic() - started >= duration_s:
            break
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        line = time.strftime("%H:%M:%S ") + _summary(watcher, gateways)
        if tty:
            click.echo("\r" + line + "  ", nl=False)
        else:
            click.echo(line)
