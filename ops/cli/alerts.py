"""``coldchain alerts`` and ``coldchain audit``: run the alert service; check the audit
trail, create or migrate the schema."""

from __future__ import annotations

from pathlib import Path

import click

from coldchain.settings import ConfigError, load_toml
from ops.cli.common import db_url_option, fail


@click.group()
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
    from alerts.app import run_alerts
    from alerts.config import AlertsConfig

    try:
        # a bad file, a recipient without a route or a missing secret stops it at start
        run_alerts(load_toml(config_path, AlertsConfig))
    except ConfigError as exc:
        fail(exc, 2)


@click.group()
def audit() -> None:
    """The audit trail: append-only and hash-chained."""


@audit.command("verify")
@db_url_option
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
        raise SystemExit(1)
    click.echo(f"audit trail intact: {last_id} rows, head {last_hash}")


@audit.command("init")
@db_url_option
def audit_init(db_url: str) -> None:
    """Create or migrate the alert service's schema (Alembic)."""
    from alerts.db import upgrade

    upgrade(db_url)
    click.echo("schema at head")


COMMANDS = (alerts, audit)
