"""``coldchain broker`` and ``coldchain grafana``: the production broker's accounts, and
Grafana as code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from coldchain.settings import ConfigError, secret
from ops.accounts import SERVICE_RULES
from ops.cli.common import fail


@click.group()
def broker() -> None:
    """Accounts of the production Mosquitto (password file and ACL)."""


def _broker_files(listener: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """--passwd and --acl of one listener's files (``gateways`` or ``services``)."""

    def add(f: Callable[..., None]) -> Callable[..., None]:
        for option, what, suffix in (("--acl", "ACL", "acl"), ("--passwd", "password", "passwd")):
            f = click.option(
                option,
                type=click.Path(path_type=Path),
                default=Path(f"deploy/mosquitto/{listener}.{suffix}"),
                show_default=True,
                help=f"Mosquitto {what} file of the {listener}' listener",
            )(f)
        return f

    return add


@broker.command("add-gateway")
@click.argument("gateway_id")
@click.option("--site", required=True, help="the gateway's site id")
@click.option(
    "--password-env",
    default=None,
    help="take the password from this variable (default: make a random one and print it)",
)
@_broker_files("gateways")
def broker_add_gateway(
    gateway_id: str, site: str, password_env: str | None, passwd: Path, acl: Path
) -> None:
    """Let a gateway publish under its own site and id, and nothing else."""
    import re
    import secrets as random_secrets

    from coldchain.wire import ID_PATTERN
    from ops.accounts import AccountError, add_account, gateway_rules

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
        fail(exc, 1)
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
@click.option("--role", type=click.Choice(sorted(SERVICE_RULES)), required=True)
@click.option("--password-env", required=True, help="the variable holding its password")
@_broker_files("services")
def broker_add_service(
    username: str, role: str, password_env: str, passwd: Path, acl: Path
) -> None:
    """A service account: it reads what the service consumes and writes only its own
    heartbeat. One account per process (collector-1, collector-2, api, api-2 …): the
    broker names each connection after its account, so two processes sharing one would
    take each other's session."""
    from ops.accounts import AccountError, add_account

    try:
        add_account(
            passwd, acl, username, secret(password_env, "--password-env"), SERVICE_RULES[role]
        )
    except (AccountError, ConfigError) as exc:
        fail(exc, 1)
    click.echo(f"service account {username} ({role}) written to {passwd} and {acl}")


@click.group()
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
    come from INFLUXDB_ORG, INFLUXDB_BUCKET, INFLUXDB_GRAFANA_TOKEN (read-only: `coldchain
    deploy influx-tokens`), POSTGRES_DB, GRAFANA_DB_USER and GRAFANA_DB_PASSWORD (the
    read-only role of `coldchain deploy grafana-role`)."""
    from grafana_client.api import GrafanaApi

    from ops.grafana import DataSources, provision

    try:
        token = secret(token_env, "--token-env")
        sources = DataSources(
            influx_url=influx_url,
            influx_org=secret("INFLUXDB_ORG", "influx org"),
            influx_bucket=secret("INFLUXDB_BUCKET", "influx bucket"),
            influx_token=secret("INFLUXDB_GRAFANA_TOKEN", "influx token"),
            postgres_host=postgres_host,
            postgres_db=secret("POSTGRES_DB", "postgres database"),
            postgres_user=secret("GRAFANA_DB_USER", "postgres user"),
            postgres_password=secret("GRAFANA_DB_PASSWORD", "postgres password"),
        )
    except ConfigError as exc:
        fail(exc, 2)
    for line in provision(GrafanaApi.from_url(url, credential=token), sources):
        click.echo(line)


@grafana.command("export")
@click.argument(
    "directory", type=click.Path(path_type=Path), default=Path("deploy/grafana/dashboards")
)
def grafana_export(directory: Path) -> None:
    """Write the dashboards as files for Grafana's file provisioning (docker-compose)."""
    from ops.grafana import export

    for path in export(directory):
        click.echo(f"wrote {path}")


COMMANDS = (broker, grafana)
