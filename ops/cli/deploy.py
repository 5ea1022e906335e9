"""``coldchain deploy``: the set-up steps of a county server that scope its secrets."""

from __future__ import annotations

import click

from coldchain.settings import ConfigError, secret
from ops.cli.common import db_url_option, fail


@click.group()
def deploy() -> None:
    """Least privilege on a county server (README, "Production")."""


@deploy.command("check-env")
@click.argument("variables", nargs=-1)
def deploy_check_env(variables: tuple[str, ...]) -> None:
    """Refuse admin secrets that are empty, placeholders or short (default: the admin
    passwords and tokens of PostgreSQL, InfluxDB and Grafana). Exit 2 naming each."""
    from ops.deploy import ADMIN_SECRETS, check_env

    problems = check_env(variables or ADMIN_SECRETS)
    if problems:
        fail(ConfigError("environment", problems), 2)
    click.echo(f"{len(variables or ADMIN_SECRETS)} secrets set")


@deploy.command("grafana-role")
@db_url_option
@click.option("--role", default="grafana_reader", show_default=True)
@click.option(
    "--password-env",
    default="GRAFANA_DB_PASSWORD",
    show_default=True,
    help="the variable holding the role's password",
)
def deploy_grafana_role(db_url: str, role: str, password_env: str) -> None:
    """Create or update the read-only PostgreSQL role of Grafana's data source (run it
    with the database owner's URL)."""
    from alerts.db import make_engine
    from ops.deploy import grant_grafana_reader

    try:
        password = secret(password_env, "--password-env")
        lines = grant_grafana_reader(make_engine(db_url), role, password)
    except ConfigError as exc:
        fail(exc, 2)
    for line in lines:
        click.echo(line)


@deploy.command("influx-tokens")
@click.option("--url", default="http://influxdb:8086", show_default=True)
@click.option("--admin-token-env", default="INFLUXDB_ADMIN_TOKEN", show_default=True)
def deploy_influx_tokens(url: str, admin_token_env: str) -> None:
    """Make one InfluxDB token per service (collectors write, the others read) on
    INFLUXDB_ORG's INFLUXDB_BUCKET and print them as .env lines."""
    from ops.deploy import make_influx_tokens

    try:
        tokens = make_influx_tokens(
            url,
            secret(admin_token_env, "--admin-token-env"),
            secret("INFLUXDB_ORG", "influx org"),
            secret("INFLUXDB_BUCKET", "influx bucket"),
        )
    except ConfigError as exc:
        fail(exc, 2)
    for variable, token in tokens.items():
        click.echo(f"{variable}={token}")


COMMANDS = [deploy]
