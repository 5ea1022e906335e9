"""``coldchain export``, ``report`` and ``mkt``: the readings and what they say of a
batch."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

import click

from collector.config import SqliteStoreConfig
from ops.cli.common import db_url_option, fail, readings_store, readings_store_options


@click.command()
@readings_store_options
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
    from collector.export import export_csv, parse_time
    from collector.store import open_store

    store_config = readings_store(config_path, db)
    try:
        start_ms = parse_time(start)
        end_ms = parse_time(end) if end else time.time_ns() // 1_000_000 + 1
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    store = open_store(store_config)
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


@click.command()
@click.argument("batch_id")
@db_url_option
@readings_store_options
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def report(
    batch_id: str, db_url: str, config_path: Path | None, db: Path | None, as_json: bool
) -> None:
    """A batch's journey report: stays, sensors and the calibrations applied, breaches and
    who acknowledged them, the verdict (MKT, time out of range, 2 h / 4 h), flags."""
    import json

    from alerts.db import make_engine
    from alerts.errors import DomainError
    from alerts.report import as_dict, batch_report, render_text
    from collector.store import open_store

    store_config = readings_store(config_path, db)
    engine = make_engine(db_url)
    store = open_store(store_config)
    try:
        result = batch_report(engine, store, batch_id, time.time_ns() // 1_000_000)
    except DomainError as exc:
        fail(exc, 1)
    finally:
        store.close()
        engine.dispose()
    click.echo(
        json.dumps(as_dict(result), default=str, ensure_ascii=False, indent=1)
        if as_json
        else render_text(result)
    )


@click.command()
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
@click.option("--sensor", default=None, help="the sensor, in a file of several (export)")
@click.option(
    "--tz", default="Asia/Shanghai", show_default=True, help="the time zone times are shown in"
)
def mkt(
    csv_path: Path, dh_r_k: float, max_gap_min: float | None, sensor: str | None, tz: str
) -> None:
    """Mean kinetic temperature of a CSV: one written by `coldchain export`, or one with
    columns timestamp (ISO 8601) and temp_c."""
    from alerts.mkt import MktError, mkt_report, read_csv

    try:
        series = read_csv(csv_path, sensor)
        found = mkt_report(
            series,
            dh_r_k=dh_r_k,
            max_gap_ms=None if max_gap_min is None else int(max_gap_min * 60_000),
        )
    except (MktError, OSError) as exc:
        fail(f"cannot compute MKT: {exc}", 2)
    click.echo(
        f"MKT {found.mkt_c:.2f} °C over {found.readings} readings "
        f"(ΔH/R {dh_r_k:g} K; time-weighted mean {found.mean_c:.2f} °C)"
    )
    if found.capped_gaps:
        click.echo(
            f"{len(found.capped_gaps)} gap(s) longer than {found.cap_ms / 60_000:g} min "
            "counted only for that long:"
        )
        for start, end in found.capped_gaps:
            click.echo(
                f"  {_local(start, tz)} to {_local(end, tz)} ({(end - start) / 60_000:g} min)"
            )


def _local(ts_ms: int, tz: str) -> str:
    """A time as a person reads it: date and time in the zone, with its offset."""
    return datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz)).isoformat(sep=" ", timespec="minutes")


@click.group()
def store() -> None:
    """The embedded SQLite readings store: compaction, retention and checks."""


def _sqlite(config_path: Path | None, db: Path | None) -> SqliteStoreConfig:
    config = readings_store(config_path, db)
    if not isinstance(config, SqliteStoreConfig):
        fail("compaction and retention are the SQLite store's (InfluxDB keeps its own)", 2)
    return config


@store.command()
@readings_store_options
def compact(config_path: Path | None, db: Path | None) -> None:
    """Compact every settled day now and apply the retention (the collector does it
    every ``compact_every_s``); prints what it did."""
    from coldchain.health import Health
    from collector.maintenance import Maintenance
    from collector.sqlite_store import SqliteStore

    config = _sqlite(config_path, db)
    sqlite = SqliteStore(config.path)
    try:
        upkeep = Maintenance(sqlite, config, Health("store"))
        upkeep.run()
    finally:
        sqlite.close()
    c = upkeep.counters
    click.echo(
        f"compacted {c.readings_compacted} readings into {c.days_compacted} sensor-days "
        f"({c.reading_copies_dropped} copies dropped); kept only the roll-ups of "
        f"{c.raw_days_pruned} sensor-days, removed {c.days_pruned}; "
        f"{c.compaction_failures} damaged chunks"
    )
    if c.compaction_failures:
        sys.exit(1)


@store.command()
@readings_store_options
def check(config_path: Path | None, db: Path | None) -> None:
    """Decode every chunk of the store; name those that do not (exit 1 if any)."""
    from collector.sqlite_store import SqliteStore

    sqlite = SqliteStore(_sqlite(config_path, db).path)
    try:
        damaged = list(sqlite.damaged_chunks())
        total = sqlite.chunk_count()
    finally:
        sqlite.close()
    for where, reason in damaged:
        click.echo(f"damaged: {where}: {reason}")
    click.echo(f"{total} chunks, {len(damaged)} damaged")
    if damaged:
        sys.exit(1)


COMMANDS = (export, report, mkt, store)
