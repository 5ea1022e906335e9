"""The ``coldchain`` command."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from coldchain import __version__, logs
from coldchain.settings import ConfigError

if TYPE_CHECKING:
    from collector.config import CollectorConfig
    from collector.store import Store
    from gateway.config import GatewayConfig


@click.group()
@click.version_option(__version__)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
)
def main(log_level: str) -> None:
    """Open, self-hostable cold-chain monitoring."""
    logs.setup(log_level)


def _load_gateway_config(path: Path) -> GatewayConfig:
    """The config, or exit 2 with the file, the field and what was expected."""
    from gateway.config import load_config
    from gateway.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


@main.group()
def gateway() -> None:
    """Edge gateway: read sensors, buffer durably, publish over MQTT."""


@gateway.command("run")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),
    help="gateway config file (TOML)",
)
def gateway_run(config_path: Path) -> None:
    """Run a gateway until SIGINT/SIGTERM."""
    from gateway.app import run_gateway

    run_gateway(_load_gateway_config(config_path))


@gateway.command("check")
@click.argument("config_path", type=click.Path(path_type=Path))
def gateway_check(config_path: Path) -> None:
    """Validate a gateway config file and the profiles it names."""
    config = _load_gateway_config(config_path)
    devices = sum(len(b.devices) for b in config.buses)
    click.echo(f"{config_path}: ok ({len(config.buses)} buses, {devices} devices)")


@main.group()
def collector() -> None:
    """Collector: store every reading exactly once."""


@collector.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="collector config (TOML); without it: SQLite in var/, broker on 127.0.0.1",
)
def collector_run(config_path: Path | None) -> None:
    """Run a collector until SIGINT/SIGTERM."""
    from collector.app import Collector, open_store
    from collector.errors import StoreUnavailable

    config = _load_collector_config(config_path)
    try:
        store = open_store(config)
    except StoreUnavailable as exc:
        click.echo(f"store unavailable at start: {exc}", err=True)
        sys.exit(3)
    service = Collector(config, store)
    _run_until_signalled(
        service.start, service.stop, store.close, healthy=lambda: service.connected
    )


@collector.command("retire")
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--quiet-s", default=3.0, show_default=True, help="drained after this long idle")
def collector_retire(config_path: Path, quiet_s: float) -> None:
    """Remove a collector from its shared group for good: store what the broker queued
    for it, then end its session. (Stopping one is not enough: Mosquitto keeps queueing
    its share of the stream until its session expires.)"""
    from collector.app import Collector, open_store
    from collector.errors import StoreUnavailable

    config = _load_collector_config(config_path)
    try:
        store = open_store(config)
    except StoreUnavailable as exc:
        click.echo(f"store unavailable: {exc}", err=True)
        sys.exit(3)
    try:
        drained = Collector(config, store).retire(quiet_s=quiet_s)
    finally:
        store.close()
    click.echo(f"collector {config.collector.id} retired; {drained} queued messages stored")


def _run_until_signalled(
    start: Callable[[], None],
    *stops: Callable[[], None],
    healthy: Callable[[], bool] | None = None,
) -> None:
    """Start a threaded service, wait for SIGINT/SIGTERM, then run the stops in order.
    While ``healthy()`` holds, the file named by COLDCHAIN_HEALTH_FILE is touched every
    few seconds (a container health check reads its age)."""
    import os

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    health_file = os.environ.get("COLDCHAIN_HEALTH_FILE")
    start()
    try:
        while not stop.wait(1.0):  # a timed wait lets the signal handlers run
            if health_file and healthy is not None and healthy():
                Path(health_file).touch()
    finally:
        for step in stops:
            step()


def _load_collector_config(path: Path | None) -> CollectorConfig:
    from collector.config import CollectorConfig, load_collector_config

    if path is None:
        return CollectorConfig()
    try:
        return load_collector_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def _readings_store_options(f: Callable[..., None]) -> Callable[..., None]:
    """--config or --db: where the readings are (the collector's store)."""
    f = click.option(
        "--db",
        type=click.Path(path_type=Path),
        default=None,
        help="an SQLite readings store file (instead of --config)",
    )(f)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="collector config naming the store (default: SQLite var/coldchain.sqlite)",
    )(f)


def _readings_config(config_path: Path | None, db: Path | None) -> CollectorConfig:
    from collector.config import CollectorConfig, SqliteStoreConfig

    if db is not None:
        return CollectorConfig(store=SqliteStoreConfig(kind="sqlite", path=db))
    return _load_collector_config(config_path)


_alerts_db_url = click.option(
    "--db-url",
    envvar="COLDCHAIN_DB_URL",
    default="sqlite:///var/alerts.sqlite",
    show_default=True,
    help="SQLAlchemy URL of the alert service's database",
)


@main.command()
@_readings_store_options
@click.option("--sensor", default=None, help="one sensor, e.g. cr1-ctrl.air")
@click.option("--site", default=None, help="every sensor of a site")
@click.option("--gateway", "gateway_id", default=None, help="every sensor of a gateway")
@click.option(
    "--from",
    "start",
    default="0",
    show_default=True,
    help="ISO 8601 time (UTC unless it says) or epoch ms",
)
@click.option("--to", "end", default=None, help="ISO 8601 time or epoch ms (default: now)")
@click.option("--out", type=click.File("w"), default="-", help="CSV file (default: stdout)")
def export(
    config_path: Path | None,
    db: Path | None,
    sensor: str | None,
    site: str | None,
    gateway_id: str | None,
    start: str,
    end: str | None,
    out: TextIO,
) -> None:
    """Write stored readings of a sensor, gateway or site over a time range as CSV."""
    from collector.app import open_store
    from collector.export import export_csv, parse_time

    config = _readings_config(config_path, db)
    try:
        start_ms = parse_time(start)
        end_ms = parse_time(end) if end else time.time_ns() // 1_000_000 + 1
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    store = open_store(config)
    try:
        rows = export_csv(
            store,
            out,
            start_ms=start_ms,
            end_ms=end_ms,
            sensor=sensor,
            site=site,
            gateway=gateway_id,
        )
    finally:
        store.close()
    click.echo(f"{rows} readings exported", err=True)


@main.command()
@click.option(
    "--mqtt-url",
    default=None,
    help="use this broker (mqtt://host:port) instead of starting a Mosquitto of its own",
)
@click.option(
    "--workdir",
    default=Path("var/demo"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="broker data, outboxes, pty links",
)
@click.option("--duration-s", type=float, default=None, help="stop after N seconds")
@click.option(
    "--accel",
    default=60.0,
    show_default=True,
    help="time acceleration: simulated seconds per real second",
)
@click.option("--interval-s", default=5.0, show_default=True, help="gateway poll interval")
@click.option("--no-events", is_flag=True, help="no scripted door/compressor/signal events")
@click.option(
    "--web-port",
    default=8080,
    show_default=True,
    help="port of the web pages and API on 127.0.0.1 (0: any free port)",
)
def demo(
    mqtt_url: str | None,
    workdir: Path,
    duration_s: float | None,
    accel: float,
    interval_s: float,
    no_events: bool,
    web_port: int,
) -> None:
    """Run broker, simulated county and gateways on embedded defaults, with a live summary."""
    from coldchain.demo import run_demo

    workdir_abs = workdir.resolve()
    asyncio.run(
        run_demo(
            mqtt_url=mqtt_url,
            workdir=workdir_abs,
            duration_s=duration_s,
            accel=accel,
            interval_s=interval_s,
            scripted=not no_events,
            web_port=web_port,
        )
    )


@main.command()
@click.option("--mqtt-host", default="127.0.0.1", show_default=True)
@click.option("--mqtt-port", default=1883, show_default=True, type=int)
@click.option(
    "--workdir",
    default=Path("var/sim"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="where pty links and gateway configs go",
)
@click.option(
    "--accel",
    default=60.0,
    show_default=True,
    help="time acceleration: simulated seconds per real second",
)
@click.option(
    "--interval-s",
    default=5.0,
    show_default=True,
    help="poll interval written into the gateway configs",
)
@click.option("--no-events", is_flag=True, help="no scripted door/compressor/signal events")
@click.option("--duration-s", type=float, default=None, help="stop after N seconds")
def simulate(
    mqtt_host: str,
    mqtt_port: int,
    workdir: Path,
    accel: float,
    interval_s: float,
    no_events: bool,
    duration_s: float | None,
) -> None:
    """Run the simulated county cold chain (real Modbus servers and serial ptys)."""
    from coldchain.sim.county import County

    workdir_abs = workdir.resolve()

    async def run() -> None:
        county = County(
            mqtt_host=mqtt_host,
            mqtt_port=mqtt_port,
            accel=accel,
            workdir=workdir_abs,
            interval_s=interval_s,
            scripted=not no_events,
        )
        configs = await county.start()
        click.echo("simulated devices (read them with any Modbus client, e.g. mbpoll):")
        for line in county.describe():
            click.echo(line)
        click.echo("gateway configs:")
        for path in configs:
            click.echo(f"  coldchain gateway run --config {path}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), duration_s)
        await county.stop()

    asyncio.run(run())


@main.command()
@click.argument("batch_id")
@_alerts_db_url
@_readings_store_options
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def report(
    batch_id: str, db_url: str, config_path: Path | None, db: Path | None, as_json: bool
) -> None:
    """A batch's journey report: stays, sensors and the calibrations applied, breaches and
    who acknowledged them, the verdict (MKT, time out of range, 2 h / 4 h), flags."""
    import json

    from alerts.db import make_engine
    from alerts.repo import RepoError
    from alerts.report import as_dict, batch_report, render_text
    from collector.app import open_store

    config = _readings_config(config_path, db)
    engine = make_engine(db_url)
    store = open_store(config)
    try:
        result = batch_report(engine, store, batch_id, time.time_ns() // 1_000_000)
    except RepoError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    finally:
        store.close()
        engine.dispose()
    click.echo(
        json.dumps(as_dict(result), default=str, ensure_ascii=False, indent=1)
        if as_json
        else render_text(result)
    )


@main.command()
@click.argument("csv_path", type=click.Path(path_type=Path))
@click.option(
    "--dh-r-k",
    default=10_000.0,
    show_default=True,
    help="activation energy over the gas constant, ΔH/R, in kelvin",
)
@click.option(
    "--max-gap-min",
    type=float,
    default=None,
    help="a reading stands for at most this long (gaps count for nothing more)",
)
def mkt(csv_path: Path, dh_r_k: float, max_gap_min: float | None) -> None:
    """Mean kinetic temperature of a CSV with columns timestamp (ISO 8601) and temp_c."""
    from alerts.mkt import MktError, mkt_of_series, read_csv

    try:
        series = read_csv(csv_path)
        value = mkt_of_series(
            series,
            dh_r_k=dh_r_k,
            max_gap_ms=None if max_gap_min is None else int(max_gap_min * 60_000),
        )
    except (MktError, OSError) as exc:
        click.echo(f"cannot compute MKT: {exc}", err=True)
        sys.exit(2)
    mean = sum(t for _, t in series) / len(series)
    click.echo(
        f"MKT {value:.2f} °C over {len(series)} readings "
        f"(ΔH/R {dh_r_k:g} K; arithmetic mean {mean:.2f} °C)"
    )


@main.group()
def alerts() -> None:
    """Alert service: breaches for product batches, alarms, escalation."""


@alerts.command("run")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),
    help="alert service config (TOML)",
)
def alerts_run(config_path: Path) -> None:
    """Run the alert service until SIGINT/SIGTERM (database URL from the environment)."""
    from alerts.config import AlertsConfig
    from alerts.db import make_engine, upgrade
    from alerts.service import AlertService, Escalation
    from coldchain.settings import load_toml

    try:
        config = load_toml(config_path, AlertsConfig)
        url = config.alerts.db_url()
        escalation = None
        if config.escalation is not None:
            escalation = Escalation(
                config.escalation.policy(),
                config.route_map(),
                config.channel_map(),
                site_policies=config.site_policies(),
            )
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    upgrade(url)
    engine = make_engine(url)
    history: Callable[[], Store] | None = None
    if config.store is not None:
        from collector.app import open_store
        from collector.config import CollectorConfig

        history = functools.partial(open_store, CollectorConfig(store=config.store))

    service = AlertService(
        engine,
        config.mqtt,
        client_id=config.alerts.id,
        group=config.alerts.group,
        sites=config.alerts.sites,
        escalation=escalation,
        history=history,
    )
    _run_until_signalled(
        service.start, service.stop, engine.dispose, healthy=lambda: service.connected
    )


@main.group()
def audit() -> None:
    """The audit trail: append-only and hash-chained."""


@audit.command("verify")
@_alerts_db_url
def audit_verify(db_url: str) -> None:
    """Check that no audit row was changed, removed or reordered; exit 1 if one was."""
    from alerts.audit import head, verify
    from alerts.db import make_engine

    engine = make_engine(db_url)
    problems = verify(engine)
    last_id, last_hash = head(engine)
    if problems:
        for problem in problems:
            click.echo(f"TAMPERED {problem}", err=True)
        sys.exit(1)
    click.echo(f"audit trail intact: {last_id} rows, head {last_hash}")


@audit.command("init")
@_alerts_db_url
def audit_init(db_url: str) -> None:
    """Create or migrate the alert service's schema (Alembic)."""
    from alerts.db import upgrade

    upgrade(db_url)
    click.echo("schema at head")


@main.command("api")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8080, show_default=True, help="TCP port")
def api_command(host: str, port: int) -> None:
    """Serve the web API and pages. Settings from COLDCHAIN_* environment variables:
    COLDCHAIN_DB_URL (required outside demo mode), COLDCHAIN_READINGS_DB or
    COLDCHAIN_STORE_CONFIG, COLDCHAIN_MQTT_HOST/PORT, COLDCHAIN_SITES."""
    import uvicorn
    from pydantic import ValidationError

    from api.app import create_app
    from api.settings import ApiSettings

    try:
        settings = ApiSettings()
    except ValidationError as exc:
        problems = [
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        ]
        click.echo(str(ConfigError("environment", problems)), err=True)
        sys.exit(2)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@main.group()
def users() -> None:
    """People who sign in to the pages and the API (there is no default user)."""


_DB_URL = click.option(
    "--db-url",
    envvar="COLDCHAIN_DB_URL",
    required=True,
    help="SQLAlchemy URL of the service's database (or COLDCHAIN_DB_URL)",
)


@users.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(["admin", "quality", "operator", "driver", "viewer"]),
    required=True,
)
@click.option("--display-name", default=None)
@click.option(
    "--password-env",
    default=None,
    help="read the password from this environment variable instead of a prompt",
)
@_DB_URL
def users_add(
    username: str, role: str, display_name: str | None, password_env: str | None, db_url: str
) -> None:
    """Create a user (the first admin is made this way). Audited."""
    import os

    from alerts.db import make_engine, upgrade
    from alerts.repo import RepoError
    from alerts.users import Role, create_user

    if password_env is not None:
        password = os.environ.get(password_env, "")
        if not password:
            click.echo(f"environment variable {password_env} is empty or not set", err=True)
            sys.exit(2)
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        create_user(engine, username, password, Role(role), actor="cli", display_name=display_name)
    except RepoError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    click.echo(f"user {username} ({role}) created")


@users.command("list")
@_DB_URL
def users_list(db_url: str) -> None:
    from alerts.db import make_engine
    from alerts.users import list_users

    engine = make_engine(db_url)
    for u in list_users(engine):
        click.echo(
            f"{u.username:20} {u.role:9} {'active' if u.active else 'inactive':9} {u.display_name}"
        )
    engine.dispose()


@main.group()
def broker() -> None:
    """Accounts of the production Mosquitto (password file and ACL)."""


_BROKER_FILES = [
    click.option(
        "--passwd",
        type=click.Path(path_type=Path),
        default=Path("deploy/mosquitto/passwd"),
        show_default=True,
        help="Mosquitto password file",
    ),
    click.option(
        "--acl",
        type=click.Path(path_type=Path),
        default=Path("deploy/mosquitto/acl"),
        show_default=True,
        help="Mosquitto ACL file",
    ),
]


def _broker_files(f: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_BROKER_FILES):
        f = option(f)
    return f


@broker.command("add-gateway")
@click.argument("gateway_id")
@click.option("--site", required=True, help="the gateway's site id")
@click.option(
    "--password-env",
    default=None,
    help="take the password from this variable (default: make a random one and print it)",
)
@_broker_files
def broker_add_gateway(
    gateway_id: str, site: str, password_env: str | None, passwd: Path, acl: Path
) -> None:
    """Let a gateway publish under its own site and id, and nothing else."""
    import re
    import secrets as random_secrets

    from coldchain.accounts import AccountError, add_account, gateway_rules
    from coldchain.settings import secret
    from coldchain.wire import ID_PATTERN

    for name, value in (("gateway id", gateway_id), ("site", site)):
        if not re.fullmatch(ID_PATTERN, value):
            raise click.BadParameter(f"{name} {value!r} does not match {ID_PATTERN}")
    try:
        password = (
            secret(password_env, "--password-env")
            if password_env
            else random_secrets.token_urlsafe(18)
        )
        add_account(passwd, acl, gateway_id, password, gateway_rules(site, gateway_id))
    except (AccountError, ConfigError) as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(f"gateway {gateway_id} may publish under coldchain/v1/{site}/{gateway_id}/")
    click.echo("its [mqtt] section (put the password in the unit's environment file):")
    click.echo(
        f'\n[mqtt]\nhost = "BROKER"\nport = 8883\ntls = true\nca_file = "/etc/coldchain/ca.crt"\n'
        f'username = "{gateway_id}"\npassword_env = "COLDCHAIN_MQTT_PASSWORD"\n'
    )
    if not password_env:
        click.echo(f"COLDCHAIN_MQTT_PASSWORD={password}")


@broker.command("add-service")
@click.argument("username")
@click.option("--role", type=click.Choice(["collector", "alerts", "api"]), required=True)
@click.option("--password-env", required=True, help="the variable holding its password")
@_broker_files
def broker_add_service(
    username: str, role: str, password_env: str, passwd: Path, acl: Path
) -> None:
    """A service account: it reads what the service consumes and writes nothing."""
    from coldchain.accounts import SERVICE_RULES, AccountError, add_account
    from coldchain.settings import secret

    try:
        add_account(
            passwd, acl, username, secret(password_env, "--password-env"), SERVICE_RULES[role]
        )
    except (AccountError, ConfigError) as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(f"service account {username} ({role}) written to {passwd} and {acl}")


@main.group()
def grafana() -> None:
    """Grafana as code: data sources and dashboards."""


@grafana.command("provision")
@click.option("--url", required=True, help="Grafana's address, e.g. http://grafana:3000")
@click.option(
    "--token-env",
    default="GRAFANA_TOKEN",
    show_default=True,
    help="variable holding a service account token (Admin role)",
)
@click.option("--influx-url", default="http://influxdb:8086", show_default=True)
@click.option("--postgres-host", default="postgres:5432", show_default=True)
def grafana_provision(url: str, token_env: str, influx_url: str, postgres_host: str) -> None:
    """Create or update the InfluxDB and PostgreSQL data sources, the coldchain folder and
    the dashboards, by uid: running it again changes nothing. The data sources' secrets
    come from INFLUXDB_ORG, INFLUXDB_BUCKET, INFLUXDB_TOKEN, POSTGRES_DB, POSTGRES_USER,
    POSTGRES_PASSWORD (the .env of docker-compose)."""
    from grafana_client.api import GrafanaApi

    from coldchain.grafana import DataSources, provision
    from coldchain.settings import secret

    try:
        token = secret(token_env, "--token-env")
        sources = DataSources(
            influx_url=influx_url,
            influx_org=secret("INFLUXDB_ORG", "influx org"),
            influx_bucket=secret("INFLUXDB_BUCKET", "influx bucket"),
            influx_token=secret("INFLUXDB_TOKEN", "influx token"),
            postgres_host=postgres_host,
            postgres_db=secret("POSTGRES_DB", "postgres database"),
            postgres_user=secret("POSTGRES_USER", "postgres user"),
            postgres_password=secret("POSTGRES_PASSWORD", "postgres password"),
        )
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    for line in provision(GrafanaApi.from_url(url, credential=token), sources):
        click.echo(line)


@grafana.command("export")
@click.argument(
    "directory", type=click.Path(path_type=Path), default=Path("deploy/grafana/dashboards")
)
def grafana_export(directory: Path) -> None:
    """Write the dashboards as files for Grafana's file provisioning (docker-compose)."""
    from coldchain.grafana import export

    for path in export(directory):
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
