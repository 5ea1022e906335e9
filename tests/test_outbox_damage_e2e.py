"""A gateway whose outbox was damaged by a power cut keeps running and says what was lost.

A real gateway process is killed -9 (the power cut), its outbox file damaged the ways a
cut disk damages it (truncated to half, deleted, its -wal lost), and started again on
it, with a real collector on a SQLite store and its own Mosquitto. Checked: the gateway
is still running well after the start (never a crash loop), readings flow again, and an
``outbox`` event in the store says what became of the old outbox.
"""

from __future__ import annotations

import os
import sqlite3
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


def checkpoint(outbox: Path) -> None:
    """What a long-running gateway's outbox looks like: its pages in the main file."""
    db = sqlite3.connect(outbox, timeout=10)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        db.close()


@pytest.mark.parametrize(
    ("damage", "checkpointed", "told"),
    [
        (truncate_to_half, True, {"replaced"}),
        (delete, False, {"replaced"}),
        (lose_wal, False, {"replaced"}),  # the whole epoch lived in the -wal
        (lose_wal, True, {"went_back"}),  # the newest seals lived in the -wal
    ],
    ids=["truncated", "deleted", "first-wal-lost", "wal-lost"],
)
def test_a_gateway_on_an_outbox_damaged_by_a_power_cut_goes_on_and_says_so(
    make_run: Callable[..., Run],
    damage: Callable[[Path], None],
    checkpointed: bool,
    told: set[str],
) -> None:
    run = make_run([])
    run.collectors["c1"].start()
    gateway = run.setup.gateway
    gateway.start()
    run.wait_stored(10 * READINGS_PER_CYCLE)
    if checkpointed:
        checkpoint(run.setup.outbox)
        run.wait_stored(10 * READINGS_PER_CYCLE)  # and more since, in the -wal
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


def test_a_gateway_whose_outbox_breaks_under_it_stops_with_a_failure_for_its_unit(
    make_run: Callable[..., Run],
) -> None:
    """A task of the running gateway (here the publisher and its helpers: sealing,
    recording PUBACKs, freeing what a watermark covers) that fails on anything but a full
    disk ends the process with a failure, never a live gateway that frees nothing; the
    unit starts it again and it goes on."""
    run = make_run([])
    run.collectors["c1"].start()
    gateway = run.setup.gateway
    gateway.start()
    run.wait_stored(10 * READINGS_PER_CYCLE)
    db = sqlite3.connect(run.setup.outbox, timeout=10)
    try:
        db.execute("DROP TABLE sealed")  # the file changed under the gateway
        db.commit()
    finally:
        db.close()
    assert gateway.proc is not None
    wait_for(lambda: gateway.proc is not None and gateway.proc.poll() is not None, 30, "the end")
    assert gateway.proc.returncode == 1
    log = gateway.log.read_text()
    assert "a gateway task died" in log and "no such table: sealed" in log
    before = run.stored()
    gateway.start()  # what its unit does (Restart=always)
    run.wait_stored(10 * READINGS_PER_CYCLE)
    assert gateway.running and run.stored() > before
