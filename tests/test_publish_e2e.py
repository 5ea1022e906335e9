"""Gateway process -> real Mosquitto -> subscriber, counted by sequence number.

The gateway runs as ``coldchain gateway run`` in a subprocess (so it can be killed with
SIGKILL), reading real pymodbus servers; the broker is our own Mosquitto, stopped and
restarted mid-stream. "Taken" is the outbox's own count of readings committed at the
edge, read from its SQLite file after the gateway has stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from coldchain import wire
from coldchain.wire import Stream
from tests.harness import Broker, Recorder, wait_for
from tests.scenario import READINGS_PER_CYCLE, Setup, outbox_counts

pytestmark = pytest.mark.e2e


def readings_messages(rec: Recorder) -> list[wire.ReadingsBatch]:
    return rec.batches()


def check_exactly_once(setup: Setup) -> tuple[int, int]:
    """Every seq 1..N arrived, first arrivals in order; taken == received identities."""
    batches = readings_messages(setup.recorder)
    seqs = [b.seq for b in batches]
    first_arrivals = list(dict.fromkeys(seqs))
    assert first_arrivals == list(range(1, len(first_arrivals) + 1)), first_arrivals
    duplicates = len(seqs) - len(first_arrivals)
    unique_batches = {b.seq: b for b in batches}.values()
    identities = [(r.sensor, r.ts_ms) for b in unique_batches for r in b.readings]
    assert len(identities) == len(set(identities)), "a reading arrived in two messages"
    counts = outbox_counts(setup.outbox)
    assert counts["pending"] == 0 and counts["sealed_rows"] == 0, counts
    assert counts["taken"] == len(identities), (counts, len(identities))
    assert len({b.epoch for b in batches}) == 1
    return len(identities), duplicates


def wait_for_messages(rec: Recorder, n: int, timeout_s: float = 30) -> None:
    start = len(readings_messages(rec))
    wait_for(
        lambda: len(readings_messages(rec)) >= start + n, timeout_s, f"{n} more readings messages"
    )


def test_published_messages_follow_the_contract(setup: Setup) -> None:
    setup.gateway.start()
    wait_for_messages(setup.recorder, 5)
    wait_for(
        lambda: any(
            m.topic.endswith("/status") and b'"stats"' in m.payload
            for m in setup.recorder.snapshot()
        ),
        15,
        "a status heartbeat",
    )
    setup.gateway.stop()
    seen = {wire.parse_topic(m.topic).stream for m in setup.recorder.snapshot()}
    assert seen == {Stream.READINGS, Stream.EVENTS, Stream.STATUS}
    for m in setup.recorder.snapshot():
        parts = wire.parse_topic(m.topic)
        msg = wire.decode(parts.stream, m.payload)  # raises on any breach of the contract
        assert (msg.gateway, msg.site) == (setup.gw, setup.site)
    batch = readings_messages(setup.recorder)[2]
    assert {r.sensor for r in batch.readings} >= {"cr1-ctrl.air", "cr1-th.temp", "cr1-th.door"}
    statuses = [
        wire.decode(Stream.STATUS, m.payload)
        for m in setup.recorder.snapshot()
        if m.topic.endswith("/status")
    ]
    assert statuses[0].state == "online"  # type: ignore[union-attr]
    assert statuses[-1].state == "offline"  # type: ignore[union-attr]
    assert statuses[-1].reason == "shutdown"  # type: ignore[union-attr]
    heartbeats = [s.stats for s in statuses if s.stats]  # type: ignore[union-attr]
    assert heartbeats, "no status heartbeat with counters"
    assert heartbeats[-1]["readings_taken"] > 0
    assert heartbeats[-1]["modbus_no_response"] == 0
    check_exactly_once(setup)


def test_every_seq_arrives_once_in_order_across_a_broker_restart(
    setup: Setup, running_broker: Broker
) -> None:
    setup.gateway.start()
    wait_for_messages(setup.recorder, 10)
    running_broker.stop()
    time.sleep(3.0)  # polls go on into the outbox meanwhile
    buffered = outbox_counts(setup.outbox)["pending"]
    back_ms = time.time_ns() // 1_000_000
    running_broker.start()
    wait_for_messages(setup.recorder, 20, timeout_s=60)
    setup.gateway.stop()  # a planned stop drains what is buffered
    received, _dups = check_exactly_once(setup)
    assert buffered >= 10 * READINGS_PER_CYCLE
    assert received > buffered
    # live readings kept flowing while the (rate-limited) backlog drained
    batches = readings_messages(setup.recorder)
    backlog = [i for i, b in enumerate(batches) if b.readings[0].ts_ms < back_ms - 500]
    live = [i for i, b in enumerate(batches) if b.readings[0].ts_ms > back_ms]
    assert live and backlog
    assert live[0] < backlog[-1], "live readings waited for the whole backlog"


def test_kill_9_in_the_middle_of_a_backlog_loses_nothing(
    setup: Setup, running_broker: Broker
) -> None:
    setup.gateway.start()
    wait_for_messages(setup.recorder, 5)
    running_broker.stop()
    time.sleep(4.0)  # ~20 poll cycles buffered while the broker is away
    backlog_before = outbox_counts(setup.outbox)["pending"]
    assert backlog_before >= 10 * READINGS_PER_CYCLE
    running_broker.start()
    wait_for_messages(setup.recorder, 3, timeout_s=30)
    setup.gateway.kill9()  # power cut while the backlog drains
    left = outbox_counts(setup.outbox)
    assert left["pending"] + left["sealed_rows"] > 0, "the backlog had already drained"
    wait_for(
        lambda: any(
            m.topic.endswith("/status") and b'"lwt"' in m.payload for m in setup.recorder.snapshot()
        ),
        15,
        "the last will",
    )
    setup.gateway.start()
    wait_for(
        lambda: (lambda c: c["pending"] < 3 * READINGS_PER_CYCLE and c["sealed_messages"] == 0)(
            outbox_counts(setup.outbox)
        ),
        60,
        "the backlog to drain after the restart",
    )
    setup.gateway.stop()
    received, _dups = check_exactly_once(setup)
    assert received > backlog_before


def test_publish_refused_by_the_broker_stays_in_the_outbox_until_it_is_allowed(
    tmp_path: Path, make_setup: Callable[[Broker], Setup]
) -> None:
    """MQTT 5 PUBACK reason 135 (not authorised) must not delete anything."""
    acl = tmp_path / "acl"
    acl.write_text("topic read coldchain/#\n")  # anonymous clients may only read
    broker = Broker(tmp_path / "acl-broker", extra_lines=[f"acl_file {acl}"])
    broker.start()
    try:
        setup = make_setup(broker)
        setup.gateway.start()
        log_path = tmp_path / "gateway.log"
        wait_for(
            lambda: "broker did not take readings" in log_path.read_text(),
            30,
            "a refused readings message",
        )
        time.sleep(3.0)  # polls go on; the refused stream is held, nothing is lost
        held = outbox_counts(setup.outbox)
        assert readings_messages(setup.recorder) == []
        assert held["pending"] + held["sealed_rows"] == held["taken"] > 10 * READINGS_PER_CYCLE
        assert held["sealed_messages"] <= 2  # no flood of messages the broker refuses
        log = log_path.read_text()
        # logged once per stream, not once per message nor per retry
        assert log.count("broker did not take readings") == 1
        assert log.count("broker did not take events") == 1
        acl.write_text("topic readwrite coldchain/#\n")
        broker.restart()
        wait_for(
            lambda: (
                sum(len(b.readings) for b in readings_messages(setup.recorder)) >= held["taken"]
            ),
            60,
            "the held readings after the ACL was fixed",
        )
        setup.gateway.stop()
        check_exactly_once(setup)
    finally:
        broker.stop()


def test_gateway_started_without_a_broker_delivers_everything_once_one_is_there(
    setup: Setup, running_broker: Broker
) -> None:
    """A truck switched on in a valley with no signal."""
    running_broker.stop()
    setup.gateway.start()
    wait_for(
        lambda: outbox_counts(setup.outbox)["pending"] >= 5 * READINGS_PER_CYCLE,
        30,
        "readings buffered with no broker",
    )
    running_broker.start()
    wait_for_messages(setup.recorder, 5, timeout_s=30)
    setup.gateway.stop()
    received, _ = check_exactly_once(setup)
    assert received >= 5 * READINGS_PER_CYCLE


def test_a_second_gateway_process_on_one_config_is_refused_naming_the_first(
    setup: Setup,
) -> None:
    import subprocess
    import sys

    setup.gateway.start()
    wait_for_messages(setup.recorder, 2)
    assert setup.gateway.proc is not None
    second = subprocess.run(
        [sys.executable, "-m", "ops.cli", "gateway", "run", "--config", str(setup.gateway.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 3, second.stderr
    assert f"in use by process {setup.gateway.proc.pid}" in second.stderr
    assert setup.gateway.running  # the first goes on
    wait_for_messages(setup.recorder, 2)


def test_a_backlog_drains_in_full_chunks_at_the_configured_rate(
    setup: Setup, running_broker: Broker
) -> None:
    setup.gateway.start()
    wait_for_messages(setup.recorder, 3)
    running_broker.stop()
    time.sleep(4.0)  # a backlog of about 20 poll cycles
    backlog = outbox_counts(setup.outbox)["pending"]
    assert backlog >= 10 * READINGS_PER_CYCLE
    before = len(readings_messages(setup.recorder))
    running_broker.start()
    wait_for(
        lambda: outbox_counts(setup.outbox)["pending"] < 2 * READINGS_PER_CYCLE,
        60,
        "the backlog drained",
    )
    sizes = [len(m.readings) for m in readings_messages(setup.recorder)[before:]]
    chunk = 25  # backlog_chunk in the test gateway's config (tests/scenario.py)
    full = [n for n in sizes if n == chunk]
    # every backlog message is a full chunk but the last; live cycles are their own size
    assert len(full) >= backlog // chunk - 1, sizes
    assert not [n for n in sizes if READINGS_PER_CYCLE < n < chunk], sizes
    setup.gateway.stop()
