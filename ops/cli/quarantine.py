"""``coldchain quarantine``: what the collector (or, with ``--alerts``, the alert service)
kept aside, why, and putting it back once the cause is fixed."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from ops.cli.common import collector_config, fail

_of = click.option(
    "--alerts",
    "of_alerts",
    is_flag=True,
    help="the alert service's quarantine (messages whose judging failed), not the collector's",
)
_config = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="collector config naming its store (default: SQLite var/coldchain.sqlite)",
)
_db_url = click.option(
    "--db-url", envvar="COLDCHAIN_DB_URL", default=None, help="with --alerts: its database"
)


@click.group()
def quarantine() -> None:
    """Messages kept aside: list, show, replay."""


@quarantine.command("list")
@_of
@_config
@_db_url
@click.option("--limit", default=50, show_default=True)
def quarantine_list(
    of_alerts: bool, config_path: Path | None, db_url: str | None, limit: int
) -> None:
    """The newest kept messages: id, when, topic, reason."""
    for row_id, received_ms, topic, _payload, reason in _rows(
        of_alerts, config_path, db_url, limit
    ):
        when = datetime.fromtimestamp(received_ms / 1000, UTC).isoformat(timespec="seconds")
        click.echo(f"{row_id}\t{when}\t{topic}\t{reason}")


@quarantine.command("show")
@click.argument("row_id", type=int)
@_of
@_config
@_db_url
def quarantine_show(
    row_id: int, of_alerts: bool, config_path: Path | None, db_url: str | None
) -> None:
    """One kept message: its reason and its payload as it came."""
    for found_id, received_ms, topic, payload, reason in _rows(
        of_alerts, config_path, db_url, None, row_id
    ):
        when = datetime.fromtimestamp(received_ms / 1000, UTC).isoformat(timespec="seconds")
        click.echo(f"id: {found_id}\nreceived: {when}\ntopic: {topic}\nreason: {reason}\n")
        click.echo(payload.decode("utf-8", errors="backslashreplace"))
        return
    fail(f"no message {row_id} in the quarantine", 1)


@quarantine.command("replay")
@click.argument("row_ids", type=int, nargs=-1, required=True)
@_of
@_config
@_db_url
def quarantine_replay(
    row_ids: tuple[int, ...], of_alerts: bool, config_path: Path | None, db_url: str | None
) -> None:
    """Put messages back through the way in (after fixing their cause). The collector's
    are stored now; the alert service's are taken by the running service on its next
    tick. A message refused again is kept aside again, with today's reason."""
    if of_alerts:
        from alerts.db import make_engine, transaction
        from alerts.repo.quarantine import ask_replay

        engine = make_engine(_need(db_url))
        with transaction(engine) as s:
            asked = ask_replay(s, list(row_ids), time.time_ns() // 1_000_000)
        click.echo(f"{asked} messages will be replayed by the alert service")
        return
    from collector.app import replay_quarantined

    for row_id, outcome in replay_quarantined(collector_config(config_path), list(row_ids)):
        click.echo(f"{row_id}\t{outcome}")


def _need(db_url: str | None) -> str:
    if db_url is None:
        fail("--alerts needs --db-url (or COLDCHAIN_DB_URL)", 2)
    return db_url


def _rows(
    of_alerts: bool,
    config_path: Path | None,
    db_url: str | None,
    limit: int | None,
    row_id: int | None = None,
) -> list[tuple[int, int, str, bytes, str]]:
    if of_alerts:
        from alerts.db import make_engine, reading
        from alerts.repo.quarantine import quarantined, quarantined_one

        with reading(make_engine(_need(db_url))) as s:
            rows = (
                [quarantined_one(s, row_id)] if row_id is not None else quarantined(s, limit or 50)
            )
            return [
                (r.id, r.received_ms, r.topic, bytes(r.payload), r.reason)
                for r in rows
                if r is not None
            ]
    from collector.quarantine import Quarantine, quarantine_file

    try:
        box = Quarantine(quarantine_file(collector_config(config_path).store))
    except FileNotFoundError as exc:
        fail(exc, 1)
    try:
        kept = [box.one(row_id)] if row_id is not None else box.rows(limit or 50)
        return [(k.id, k.received_ms, k.topic, k.payload, k.reason) for k in kept if k is not None]
    finally:
        box.close()


COMMANDS = (quarantine,)
