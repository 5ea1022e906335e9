"""``coldchain setup``: a county's set-up as a file (docs/design-county.md)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import click

from ops.cli.common import db_url_option, fail


@click.group()
def setup() -> None:
    """Set a county up from its county file, or write the file from the database."""


@setup.command("apply")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="show what would change, change nothing")
@click.option("--actor", default="setup", show_default=True, help="who the audit trail names")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z"]),
    default=None,
    help="sensor assignments the file makes start then (ISO time with offset, e.g. "
    "2026-12-01T08:00+08:00; default: now), for sensors installed before the set-up",
)
@click.option(
    "--deactivate-missing",
    is_flag=True,
    help="deactivate the users the file does not name (never an admin); default: list them",
)
@db_url_option
def setup_apply(
    path: Path,
    dry_run: bool,
    actor: str,
    since: datetime | None,
    deactivate_missing: bool,
    db_url: str,
) -> None:
    """Make the database say what the county file says: prints each change, then makes
    them all in one transaction (audited), or none. What the file does not name is left
    as it is and listed. Applying the same file again changes nothing."""
    from alerts.county import Unresolved, apply, load
    from alerts.db import make_engine, upgrade
    from alerts.errors import DomainError
    from coldchain.settings import ConfigError

    try:
        county = load(path)
    except ConfigError as exc:
        fail(exc, 2)
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        at_ms = time.time_ns() // 1_000_000 if since is None else int(since.timestamp() * 1000)
        planned = apply(
            engine,
            county,
            at_ms=at_ms,
            actor=actor,
            dry_run=dry_run,
            deactivate_missing=deactivate_missing,
        )
    except Unresolved as exc:
        fail(ConfigError(path, exc.problems), 2)
    except DomainError as exc:
        fail(f"{path}: refused, nothing changed: {exc}", 1)
    finally:
        engine.dispose()
    for change in planned.changes:
        click.echo(f"  {change.text}")
    for other in planned.not_in_file:
        click.echo(f"  (not in the file, left as it is: {other})")
    n = len(planned.changes)
    if dry_run:
        click.echo(f"{n} change{'s' * (n != 1)} would be made (dry run: nothing changed)")
    else:
        click.echo(f"{n} change{'s' * (n != 1)} made" if n else "nothing to change")
    for username, password in sorted(planned.passwords.items()):
        # shown once, here: only its argon2id hash is kept
        click.echo(f"  one-time password of {username}: {password}")


@setup.command("export")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), default=None, help="file (default: stdout)"
)
@db_url_option
def setup_export(output: Path | None, db_url: str) -> None:
    """Write the county in the database as a county file."""
    from alerts.county import export, to_toml
    from alerts.db import make_engine, reading, upgrade

    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with reading(engine) as s:
            text = to_toml(export(s))
    finally:
        engine.dispose()
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")


COMMANDS = (setup,)
