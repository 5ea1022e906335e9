"""``coldchain demo``: the whole edge on embedded defaults, in one command.

It starts a Mosquitto of its own (or uses ``--mqtt-url``), the simulated county, one
gateway per site and per truck and the collector into SQLite (all in this process),
and prints a one-line summary: taken, published, stored, backlog, quarantined.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import click
import uvicorn
from sqlalchemy import Engine

from alerts.db import make_engine, transaction, upgrade
from alerts.escalation import Escalation, Route
from alerts.lifecycle import Policy, Step
from alerts.links import Links
from alerts.notify import Printed
from alerts.service import AlertService
from coldchain import wire
from coldchain.mqtt import Consumer, Delivery, SessionSpec
from coldchain.settings import MqttConfig
from coldchain.webserver import EmbeddedServer
from coldchain.wire import Stream
from collector.app import Collector
from collector.config import CollectorConfig, CollectorSection, SqliteStoreConfig
from collector.sqlite_store import SqliteStore
from gateway.app import Gateway
from gateway.config import load_config
from simulator.broker import LocalBroker, free_port
from simulator.county import County
from simulator.history import write_history
from simulator.seed import seed_county


class Watcher:
    """Follows the gateways' retained status (online/offline) at the broker."""

    def __init__(self, host: str, port: int) -> None:
        self.online: dict[str, str] = {}
        self._consumer = Consumer(
            MqttConfig(host=host, port=port),
            SessionSpec("coldchain-demo-watch", clean_start=True),
            [(wire.subscription(Stream.STATUS), 1)],
            self._handle,
            name="demo-watch",
            batch_max=100,
        )

    def start(self) -> None:
        self._consumer.start()

    def stop(self) -> None:
        self._consumer.stop()

    def _handle(self, batch: Sequence[Delivery]) -> bool:
        for item in batch:
            try:
                status = wire.decode(Stream.STATUS, item.payload)
            except wire.WireError:
                continue
            if isinstance(status, wire.Status):
                self.online[status.gateway] = status.state
        return True


@dataclass
class System:
    gateways: list[Gateway]
    collector: Collector
    store: SqliteStore
    watcher: Watcher
    alerts: AlertService


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
    web_port: int = 8080,
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
    store = SqliteStore(workdir / "coldchain.sqlite")
    collector = Collector(
        CollectorConfig(
            collector=CollectorSection(
                id="demo-collector", linger_ms=200, sites=tuple(County.SITES)
            ),
            mqtt=MqttConfig(host=host, port=port),
            store=SqliteStoreConfig(kind="sqlite", path=store.path),
        ),
        store,
    )
    alerts_url = f"sqlite:///{workdir / 'alerts.sqlite'}"
    upgrade(alerts_url)
    alerts_engine = make_engine(alerts_url)
    now_ms = time.time_ns() // 1_000_000
    if seed_county(
        alerts_engine, at_ms=now_ms, batches_since_ms=now_ms - int(HISTORY_H * 3_600_000)
    ):
        # batches with a history to audit from the first minute
        write_history(store, county.spaces, end_ms=now_ms, hours=HISTORY_H)
    # notifications link to their alarm on the demo's own pages (signed for this run)
    web_port = _usable(web_port)
    link_secret = secrets.token_urlsafe(32)
    alert_service = AlertService(
        alerts_engine,
        MqttConfig(host=host, port=port),
        client_id="demo-alerts",
        sites=tuple(County.SITES),
        time_scale=accel,
        on_alarm=_show,
        escalation=Escalation(
            # the policy's minutes run at the county's pace, like the profiles' delays
            policy=Policy(
                steps=(Step(0, ("duty-operator",)), Step(15 / accel, ("shift-lead",))),
                repeat_min=30 / accel,
            ),
            routes={  # in each one's language
                "duty-operator": (Route("printed", "duty operator", "zh"),),
                "shift-lead": (Route("printed", "shift lead", "en"),),
                "fleet-dispatcher": (Route("printed", "fleet dispatcher", "zh"),),
            },
            links=Links(f"http://127.0.0.1:{web_port}", link_secret),
            channels={"printed": Printed(_show)},
            # the trucks' alarms go to the fleet dispatcher first
            site_policies={
                "county-fleet": Policy(
                    steps=(Step(0, ("fleet-dispatcher",)), Step(15 / accel, ("shift-lead",))),
                    repeat_min=30 / accel,
                )
            },
        ),
    )
    system = System([], collector, store, Watcher(host, port), alert_service)
    logins = demo_logins(alerts_engine)
    web = _web_server(alerts_url, store.path, host, port, web_port, link_secret)
    tasks: list[asyncio.Task[None]] = [asyncio.ensure_future(web.serve())]
    try:
        configs = await county.start()
        system.watcher.start()
        collector.start()
        alert_service.start()
        for path in configs:
            gateway = Gateway(load_config(path))
            system.gateways.append(gateway)
            tasks.append(asyncio.ensure_future(gateway.run()))
        while not web.started:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        _print_banner(broker, host, port, county, system)
        _print_web(web, logins)
        await _summarise(system, duration_s)
    finally:
        web.should_exit = True
        for gateway in system.gateways:
            gateway.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _wait_stored(system, timeout_s=10)
        collector.stop()
        alert_service.stop()
        alerts_engine.dispose()
        click.echo("\nfinal: " + await _summary(system))
        system.watcher.stop()
        store.close()
        await county.stop()
        if broker is not None:
            broker.stop()


#: hours of past readings the demo starts with (its batches arrived then)
HISTORY_H = 6.0

DEMO_ROLES = ("admin", "quality", "operator", "driver", "viewer")


def demo_logins(engine: Engine) -> dict[str, str]:
    """One sign-in per role, with a fresh random password at every start (demo only:
    production has no default user; its first admin comes from `coldchain users add`)."""
    from alerts.repo.users import Role, create_user, list_users, set_password

    logins = {}
    with transaction(engine) as s:
        existing = {u.username for u in list_users(s)}
        for role in DEMO_ROLES:
            name, password = f"demo.{role}", secrets.token_urlsafe(12)
            if name in existing:  # from the demo's county file
                set_password(s, name, password, actor="demo.setup")
            else:
                create_user(s, name, password, Role(role), actor="demo.setup")
            logins[name] = password
    return logins


def _web_server(
    alerts_url: str, readings: Path, host: str, port: int, web_port: int, link_secret: str
) -> EmbeddedServer:
    from api.app import create_app
    from api.settings import ApiSettings

    settings = ApiSettings(
        demo=True,
        db_url=alerts_url,
        readings_db=readings,
        mqtt=MqttConfig(host=host, port=port),
        sites=tuple(County.SITES),
        link_secret=link_secret,
    )
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=web_port,
        log_level="warning",
        proxy_headers=False,
    )
    return EmbeddedServer(config)


def _usable(port: int) -> int:
    """The port asked for if it is free, else any free one (the banner says which)."""
    if port:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_port()


def _print_web(web: EmbeddedServer, logins: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{web.config.port}"
    click.echo(f"  web        {url}/board (alarm board), {url}/wall (monitoring wall),")
    click.echo(f"             {url}/cab/truck-01 (cab view), {url}/batches, {url}/api/docs")
    click.echo("  demo sign-ins (this run only; production has no default user):")
    for name, password in logins.items():
        click.echo(f"             {name:<15} {password}")


def _show(line: str) -> None:
    click.echo(time.strftime("%H:%M:%S ") + line)


async def _wait_stored(system: System, timeout_s: float) -> None:
    """Give the collector a moment to store what the gateways sent before they stopped."""
    deadline = time.monotonic() + timeout_s
    acked = sum(g.publisher.counters.acked_readings for g in system.gateways)
    while system.collector.counters.readings_stored < acked and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)


def _print_banner(
    broker: LocalBroker | None, host: str, port: int, county: County, system: System
) -> None:
    echo = click.echo
    echo("coldchain demo: a simulated county cold chain on embedded defaults")
    where = "started by the demo" if broker else "external"
    echo(f"  broker     mqtt://{host}:{port} ({where})")
    echo(f"  watch it   mosquitto_sub -h {host} -p {port} -t 'coldchain/v1/#' -v")
    echo("  devices (any Modbus client can read them, e.g. mbpoll):")
    for line in county.describe():
        echo("  " + line)
    echo("  gateways:")
    for gw in system.gateways:
        cfg = gw.config
        echo(
            f"    {cfg.gateway.id:<9} site {cfg.gateway.site:<16} "
            f"{len(cfg.buses)} buses, outbox {cfg.outbox.path}"
        )
    echo(
        f"  collector  shared subscription '{system.collector.config.collector.group}', "
        f"SQLite store {system.store.path}"
    )
    echo(f"  export     coldchain export --db {system.store.path} --site county-store")
    echo(
        "  scripted events: cold room 2 door left open (sim min 30-55), truck-02 loses "
        "signal (40-85), cold room 1 compressor fails (90-210)"
    )
    echo("Ctrl-C stops everything.")


async def _unconfirmed(gateway: Gateway) -> int:
    """Rows a gateway holds that no store has confirmed: through its outbox's own
    thread while it runs (its connection is not shared), from the file once stopped."""
    if not gateway.outbox.closed:
        stats = await gateway.outbox.call(gateway.outbox.sync.stats)
        return stats.pending + stats.sealed_rows
    db = sqlite3.connect(f"file:{gateway.outbox.sync.path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute(
            "SELECT (SELECT COUNT(*) FROM pending) + (SELECT COALESCE(SUM(n), 0) FROM sealed)"
        ).fetchone()
    finally:
        db.close()
    return int(row[0])


async def _summary(system: System) -> str:
    gateways = system.gateways
    taken = sum(g.sink.counters.readings_taken for g in gateways)
    acked = sum(g.publisher.counters.acked_readings for g in gateways)
    backlog = sum([await _unconfirmed(g) for g in gateways])
    c = system.collector.counters
    online = sum(1 for s in system.watcher.online.values() if s == "online")
    return (
        f"readings taken {taken}  published {acked}  stored {c.readings_stored}  "
        f"backlog {backlog}  quarantined {c.quarantined}  "
        f"gateways online {online}/{len(gateways)}  alarms {system.alerts.counters.alarms_raised}"
    )


async def _summarise(system: System, duration_s: float | None) -> None:
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
        line = time.strftime("%H:%M:%S ") + await _summary(system)
        if tty:
            click.echo("\r" + line + "  ", nl=False)
        else:
            click.echo(line)
