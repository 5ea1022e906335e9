"""``coldchain import``: batches or sensors from a spreadsheet (CSV or .xlsx), all rows
or none, each problem named by row and column (api/imports.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from ops.cli.common import db_url_option, fail


@click.group("import")
def import_() -> None:
    """Batches or sensors from a spreadsheet: CSV (UTF-8 or GB 18030) or Excel .xlsx,
    the first row naming the columns."""


def _run(
    kind: str, path: Path, actor: str, dry_run: bool, db_url: str, at_ms: int | None = None
) -> None:
    from alerts.db import make_engine, upgrade
    from alerts.repo.scope import Scope
    from alerts.repo.users import Role
    from api import imports

    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with path.open("rb") as stream:
            data = imports.read_upload(path.name, stream)
        if kind == "batches":
            everywhere = Scope(username=actor, role=Role.ADMIN, sites=None)
            done = imports.import_batches(
                engine,
                path.name,
                data,
                actor=actor,
                scope=everywhere,
                dry_run=dry_run,
                at_ms=at_ms,
            )
        else:
            done = imports.import_sensors(engine, path.name, data, actor=actor, dry_run=dry_run)
    except imports.ImportRefused as exc:
        fail("\n".join([*exc.problems, "refused, nothing imported"]), 1)
    finally:
        engine.dispose()
    verb = "would add" if dry_run else "added"
    for item in done.added:
        click.echo(f"  {verb} {item}")
    click.echo(f"{len(done.added)} {verb}, {len(done.unchanged)} already as the sheet says")


@import_.command("batches")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--actor", required=True, help="who received them (the audit trail)")
@click.option("--dry-run", is_flag=True, help="check the sheet, change nothing")
@click.option(
    "--received",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z"]),
    default=None,
    help="when they were received (ISO time with offset, e.g. 2026-12-01T08:00+08:00; "
    "default: now), for a sheet of batches already in the rooms",
)
@db_url_option
def batches(path: Path, actor: str, dry_run: bool, received: datetime | None, db_url: str) -> None:
    """Receive the batches of PATH into their rooms. Columns: id, product, profile_id,
    quantity, unit, origin_producer, origin_village, origin_county, lot, into_location,
    temp_c (as POST /api/batches). Batches already received are left as they are."""
    at_ms = None if received is None else int(received.timestamp() * 1000)
    _run("batches", path, actor, dry_run, db_url, at_ms)


@import_.command("sensors")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--actor", required=True, help="who set them up (the audit trail)")
@click.option("--dry-run", is_flag=True, help="check the sheet, change nothing")
@db_url_option
def sensors(path: Path, actor: str, dry_run: bool, db_url: str) -> None:
    """Assign the sensors of PATH to their locations from now on. Columns: gateway,
    sensor, location, role (air, product, humidity or door; default air)."""
    _run("sensors", path, actor, dry_run, db_url)


COMMANDS = (import_,)
