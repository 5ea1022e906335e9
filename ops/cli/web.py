"""``coldchain api`` and ``coldchain users``: serve the web API and pages; the people
who sign in to them."""

from __future__ import annotations

import os

import click

from coldchain.settings import ConfigError
from ops.cli.common import db_url_option, fail


@click.command("api")
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
        fail(ConfigError("environment", problems), 2)
    try:
        app = create_app(settings)
    except ConfigError as exc:  # its store config, or a store secret
        fail(exc, 2)
    health_port = os.environ.get("COLDCHAIN_HEALTH_PORT")
    hub = app.state.services.hub
    if health_port and hub is not None:
        # the live hub's health and the API's metrics on an internal port, as for the
        # collectors and the alert service (the public /api/health stays on the API)
        from coldchain.health import serve

        health_host = os.environ.get("COLDCHAIN_HEALTH_HOST", "127.0.0.1")
        serve(lambda: [hub.health], hub.metrics, health_host, int(health_port))
    # the client's address is the API's own business (COLDCHAIN_TRUSTED_PROXIES, api/deps.py):
    # uvicorn must not rewrite it from X-Forwarded-For first
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)


@click.group()
def users() -> None:
    """People who sign in to the pages and the API (there is no default user)."""


@users.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(["admin", "quality", "operator", "driver", "viewer"]),
    required=True,
)
@click.option("--display-name", default=None)
@click.option(
    "--site",
    "sites",
    multiple=True,
    help="a site they may see and act on (repeat; none: every site)",
)
@click.option("--truck", default=None, help="a driver's truck: its gateway id")
@click.option(
    "--password-env",
    default=None,
    help="read the password from this environment variable instead of a prompt",
)
@db_url_option
def users_add(
    username: str,
    role: str,
    display_name: str | None,
    sites: tuple[str, ...],
    truck: str | None,
    password_env: str | None,
    db_url: str,
) -> None:
    """Create a user (the first admin is made this way). Audited."""
    import os

    from alerts.db import make_engine, transaction, upgrade
    from alerts.errors import DomainError
    from alerts.repo.users import Role, create_user

    if password_env is not None:
        password = os.environ.get(password_env, "")
        if not password:
            fail(f"environment variable {password_env} is empty or not set", 2)
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with transaction(engine) as s:
            create_user(
                s,
                username,
                password,
                Role(role),
                actor="cli",
                display_name=display_name,
                sites=sites,
                truck=truck,
            )
    except DomainError as exc:
        fail(exc, 1)
    finally:
        engine.dispose()
    click.echo(f"user {username} ({role}) created")


@users.command("list")
@db_url_option
def users_list(db_url: str) -> None:
    from alerts.db import make_engine, reading
    from alerts.repo.scope import user_sites
    from alerts.repo.users import list_users

    engine = make_engine(db_url)
    with reading(engine) as s:
        found = list_users(s)
    for u in found:
        where = ", ".join(user_sites(u)) or "every site"
        if u.truck:
            where += f"; truck {u.truck}"
        state = "active" if u.active else "inactive"
        click.echo(f"{u.username:20} {u.role:9} {state:9} {u.display_name}  ({where})")
    engine.dispose()


COMMANDS = (api_command, users)
