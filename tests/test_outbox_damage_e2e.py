"""A gateway whose outbox was damaged by a power cut keeps running and says what was lost.

A real gateway process is killed -9 (the power cut), its outbox file damaged the ways a
cut disk damages it (truncated to half, deleted, its -wal lost), and started again on
it, with a real collector on a SQLite store and its own Mosquitto. Checked: the gateway
is still running well after the start (never a crash loop), readings flow again, and an
``outbox`` event in the store says what became of the old outbox.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.sqlite_store import SqliteStore
from tests.harness import wait_for
from tests.scenario import READINGS_PER_CYCLE
from tests.test_zero_loss import Run, make_run

pytestmark = pytest.mark.e2e
__all__ = ["make_run"]  # the fixture, shared with the zero-loss runs


def truncate_to_half(outbox: Path) -> None:
    with outbox.open("r+b") as f:
        f.truncate(max(1, outbox.stat().st_size // 2))


def delete(outbox: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{outbox}{suffix}").unlink(missing_ok=True)


def lose_wal(outbox: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{outbox}{suffix}").unlink(missing_ok=True)


def outbox_events(run: Run) -> list[tuple[str, str]]:
    store = SqliteStore(run.store)
    try:
        return [
            (state, source)
            for gw, kind, source, state in store.events()
            if gw == run.setup.gw and kind == "outbox"
        ]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("damage", "told"),
    [
        (truncate_to_half, {"replaced"}),
        (delete, {"replaced"}),
        (lose_wal, {"went_back", "replaced"}),
    ],
    ids=["truncated", "deleted", "wal-lost"],
)
def test_a_gateway_on_an_outbox_damaged_by_a_power_cut_goes_on_and_says_so(
    make_run: Callable[..., Run],
    damage: Callable[[Path], None],
    told: set[str],
) -> None:
    run = make_run([])
    run.collectors["c1"].start()
    gateway = run.setup.gateway
    gateway.start()
    run.wait_stored(10 * READINGS_PER_CYCLE)
    gateway.kill9()  # the power cut
    assert os.path.exists(run.setup.outbox)
    damage(run.setup.outbox)
    before = run.stored()
    gateway.start()
    run.wait_stored(10 * READINGS_PER_CYCLE)
    wait_for(lambda: outbox_events(run), 30, "an outbox event in the store")
    states = {state for state, _ in outbox_events(run)}
    assert states & told, states
    time.sleep(3.0)
    assert gateway.running, "the gateway stopped on its damaged outbox"
    assert run.stored() > before
    log = gateway.log.read_text()
    assert "Traceback" not in log
    assert log.count("starting:") == 2, "started twice: once before the cut, once after"
