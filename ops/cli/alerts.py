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


ANCHOR = click.option(
    "--anchor",
    type=click.Path(path_type=Path),
    envvar="COLDCHAIN_AUDIT_ANCHOR",
    default=None,
    help="the file of signed checkpoints of the trail's head, kept off the database's "
    "volume (env COLDCHAIN_AUDIT_ANCHOR)",
)


@audit.command("verify")
@db_url_option
@ANCHOR
def audit_verify(db_url: str, anchor: Path | None) -> None:
    """Check that no audit row was changed, removed or reordered, that no regulated
    record was changed outside the application, and (with --anchor) that no row was
    taken off the end; exit 1 if anything was."""
    from alerts.audit import head, verify
    from alerts.db import make_engine

    engine = make_engine(db_url)
    problems = verify(engine, anchor)
    last_id, last_hash = head(engine)
    if problems:
        for problem in problems:
            click.echo(f"TAMPERED {problem}", err=True)
        raise SystemExit(1)
    click.echo(f"audit trail intact: {last_id} rows, head {last_hash}")


@audit.command("checkpoint")
@db_url_option
@ANCHOR
def audit_checkpoint(db_url: str, anchor: Path | None) -> None:
    """Append the trail's head, signed with the audit key, to the anchor file (the
    alert service does this every minute when it has [audit] anchor_file)."""
    from alerts.audit import write_checkpoint
    from alerts.db import make_engine

    if anchor is None:
        fail("give --anchor FILE (or COLDCHAIN_AUDIT_ANCHOR)", 2)
    written = write_checkpoint(make_engine(db_url), anchor)
    click.echo("head unchanged" if written is None else f"checkpoint: row {written.row_id}")


@audit.command("init")
@db_url_option
def audit_init(db_url: str) -> None:
    """Create or migrate the alert service's schema (Alembic)."""
    from alerts.db import upgrade

    upgrade(db_url)
    click.echo("schema at head")


COMMANDS = (alerts, audit)
