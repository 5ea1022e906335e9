"""What the command groups share: failing with the file, the field and what was
expected; the one ``--db-url`` option; the one way to name a readings store."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import click

from coldchain.settings import ConfigError
from collector.config import (
    CollectorConfig,
    InfluxStoreConfig,
    SqliteStoreConfig,
    load_collector_config,
)

#: the alert service's database, for every command that works on it
db_url_option = click.option(
    "--db-url",
    envvar="COLDCHAIN_DB_URL",
    required=True,
    help="SQLAlchemy URL of the alert service's database (or COLDCHAIN_DB_URL)",
)


def fail(message: object, code: int) -> NoReturn:
    click.echo(str(message), err=True)
    sys.exit(code)


def collector_config(path: Path | None) -> CollectorConfig:
    """The collector config (defaults without a file), or exit 2 naming the problem."""
    if path is None:
        return CollectorConfig()
    try:
        return load_collector_config(path)
    except ConfigError as exc:
        fail(exc, 2)


def readings_store_options(f: Callable[..., None]) -> Callable[..., None]:
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


def readings_store(
    config_path: Path | None, db: Path | None
) -> SqliteStoreConfig | InfluxStoreConfig:
    """The store section that --config or --db name."""
    if db is not None:
        return SqliteStoreConfig(kind="sqlite", path=db)
    return collector_config(config_path).store
