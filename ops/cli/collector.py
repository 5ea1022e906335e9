"""``coldchain collector``: run a collector, retire one from its shared group."""

from __future__ import annotations

from pathlib import Path

import click

from coldchain.settings import ConfigError
from collector.errors import StoreUnavailable
from ops.cli.common import collector_config, fail


@click.group()
def collector() -> None:
    """Collector: store every reading exactly once."""


@collector.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="collector config (TOML); without it: SQLite in var/, broker on 127.0.0.1",
)
def collector_run(config_path: Path | None) -> None:
    """Run a collector until SIGINT/SIGTERM."""
    from collector.app import run_collector

    config = collector_config(config_path)
    try:
        run_collector(config)
    except ConfigError as exc:  # a store secret missing or a placeholder
        fail(exc, 2)
    except StoreUnavailable as exc:
        fail(f"store unavailable at start: {exc}", 3)


@collector.command("retire")
@click.option("--config", "config_path", type=click.Path(path_type=Path), required=True)
@click.option("--quiet-s", default=3.0, show_default=True, help="drained after this long idle")
def collector_retire(config_path: Path, quiet_s: float) -> None:
    """Remove a collector from its shared group for good: store what the broker queued
    for it, then end its session. (Stopping one is not enough: Mosquitto keeps queueing
    its share of the stream until its session expires.)"""
    from collector.app import retire_collector

    config = collector_config(config_path)
    try:
        drained = retire_collector(config, quiet_s)
    except StoreUnavailable as exc:
        fail(f"store unavailable: {exc}", 3)
    click.echo(f"collector {config.collector.id} retired; {drained} queued messages stored")


COMMANDS = (collector,)
