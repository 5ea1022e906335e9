"""The durable outbox on a real SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from coldchain import wire
from coldchain.wire import Quality, Reading, Stream
from gateway.outbox import Outbox, now_ms


def make(path: Path, max_rows: int = 1000, clock=None) -> Outbox:
    kwargs = {"clock": clock} if clock else {}
    return Outbox(path, gateway="gw", site="s", max_rows=max_rows, max_age_h=24, **kwargs)


NOW = now_ms()


def rows(n: int, start_ts: int = NOW) -> list[tuple[int, bytes]]:
    return [
        (
            start_ts + i,
            wire.encode(
                Reading(sensor="a.temp", ts_ms=start_ts + i, q=Quality.OK, temp_c=float(i))
            ),
        )
        for i in range(n)
    ]


def test_seq_increments_by_one_per_message_and_survives_reopening(tmp_path: Path) -> None:
    box = make(tmp_path / "o.sqlite")
    box.add(Stream.READINGS, rows(5))
    first = box.seal(Stream.READINGS, limit=2)
    second = box.seal(Stream.READINGS, limit=2)
    epoch = box.epoch
    box.close()
    box = make(tmp_path / "o.sqlite")
    third = box.seal(Stream.READINGS, limit=2)
    assert first and second and third
    assert [first.seq, second.seq, third.seq] == [1, 2, 3]
    assert [first.n, second.n, third.n] == [2, 2, 1]
    assert box.epoch == epoch
    assert box.seal(Stream.READINGS) is None


def test_sealed_payload_is_a_valid_batch_in_insertion_order(tmp_path: Path) -> None:
    box = make(tmp_path / "o.sqlite")
    box.add(Stream.READINGS, rows(3))
    msg = box.seal(Stream.READINGS)
    assert msg is not None
    batch = wire.decode(Stream.READINGS, msg.payload)
    assert isinstance(batch, wire.ReadingsBatch)
    assert [r.ts_ms for r in batch.readings] == [NOW, NOW + 1, NOW + 2]
    assert (batch.gateway, batch.site, batch.seq, batch.epoch) == ("gw", "s", 1, box.epoch)


def test_unpublished_messages_are_sent_byte_for_byte_after_a_crash(tmp_path: Path) -> None:
    box = make(tmp_path / "o.sqlite")
    box.add(Stream.READINGS, rows(6))
    a = box.seal(Stream.READINGS, limit=2)
    b = box.seal(Stream.READINGS, limit=2)
    c = box.seal(Stream.READINGS, limit=2)
    assert a and b and c
    box.published([(Stream.READINGS, a.seq), (Stream.READINGS, b.seq)])  # the broker took a, b
    box.confirm(Stream.READINGS, a.seq)  # and the store holds a
    box.close()  # the process dies here; the file is all that is left
    again = make(tmp_path / "o.sqlite")
    assert [(m.seq, m.payload) for m in again.unpublished()] == [(c.seq, c.payload)]
    # b is kept, waiting for the store: overdue once it was published long enough ago
    assert [m.seq for m in again.overdue(Stream.READINGS, now_ms() + 1, 10)] == [b.seq]
    stats = again.stats()
    assert (stats.sealed_messages, stats.unpublished, stats.unconfirmed) == (2, 1, 1)


def test_a_puback_keeps_the_message_until_the_store_confirms_it(tmp_path: Path) -> None:
    box = make(tmp_path / "o.sqlite")
    box.add(Stream.READINGS, rows(9))
    sealed = [box.seal(Stream.READINGS, limit=3) for _ in range(3)]
    for msg in sealed:
        assert msg is not None
        box.published([(Stream.READINGS, msg.seq)])
    assert box.stats().sealed_rows == 9
    assert box.confirm(Stream.READINGS, 2) == 6
    assert box.confirm(Stream.READINGS, 2) == 0  # a second copy of a watermark frees nothing
    assert box.stats().sealed_rows == 3


def test_each_message_says_the_lowest_seq_the_gateway_still_holds(tmp_path: Path) -> None:
    box = make(tmp_path / "o.sqlite")
    box.add(Stream.READINGS, rows(4))
    first = box.seal(Stream.READINGS, limit=1)
    second = box.seal(Stream.READINGS, limit=1)
    assert first and second
    box.confirm(Stream.READINGS, first.seq)
    third = box.seal(Stream.READINGS, limit=1)
    box.confirm(Stream.READINGS, third.seq if third else 0)
    fourth = box.seal(Stream.READINGS, limit=1)
    assert third and fourth
    held = [json.loads(m.payload)["held_from"] for m in (first, second, third, fourth)]
    assert held == [1, 1, 2, 4]


def test_a_full_outbox_gives_up_the_oldest_unconfirmed_messages_and_says_so(
    tmp_path: Path,
) -> None:
    box = make(tmp_path / "o.sqlite", max_rows=100)
    box.add(Stream.READINGS, rows(100))
    while (msg := box.seal(Stream.READINGS, limit=10)) is not None:
        box.published([(Stream.READINGS, msg.seq)])  # nobody confirms: the collector is away
    box.add(Stream.READINGS, rows(5, start_ts=NOW + 5000))
    stats = box.stats()
    assert stats.dropped == 10  # one whole message of ten, the oldest
    assert stats.pending + stats.sealed_rows == 95 + 1  # and the overflow event
    nxt = box.seal(Stream.READINGS)
    assert nxt is not None and json.loads(nxt.payload)["held_from"] == 2


def test_streams_have_their_own_sequences(tmp_path: Path) -> None:
    box = make(tmp_path / "o.sqlite")
    box.add(Stream.READINGS, rows(1))
    event = wire.Event(ts_ms=1, kind="door", source="a.door", state="open")
    box.add(Stream.EVENTS, [(1, wire.encode(event))])
    r = box.seal(Stream.READINGS)
    e = box.seal(Stream.EVENTS)
    assert r and e and r.seq == 1 and e.seq == 1
    assert json.loads(e.payload)["events"][0]["state"] == "open"


def test_full_outbox_drops_oldest_and_says_so_with_an_event(tmp_path: Path) -> None:
    box = make(tmp_path / "o.sqlite", max_rows=100)
    box.add(Stream.READINGS, rows(100, start_ts=NOW))
    box.add(Stream.READINGS, rows(30, start_ts=NOW + 5000))
    stats = box.stats()
    assert stats.dropped == 30
    assert stats.taken_readings == 130
    readings = box.seal(Stream.READINGS, limit=1000)
    assert readings is not None
    batch = wire.decode(Stream.READINGS, readings.payload)
    assert isinstance(batch, wire.ReadingsBatch)
    assert batch.readings[0].ts_ms == NOW + 30  # the 30 oldest went
    assert len(batch.readings) == 100
    events = box.seal(Stream.EVENTS)
    assert events is not None
    ev = json.loads(events.payload)["events"][0]
    assert (ev["kind"], ev["state"], ev["count"]) == ("outbox", "overflow", 30)


def test_readings_older_than_max_age_are_dropped_and_counted(tmp_path: Path) -> None:
    now = [10 * 3_600_000 * 24]
    box = make(tmp_path / "o.sqlite", clock=lambda: now[0])
    box.add(Stream.READINGS, rows(10, start_ts=now[0] - 25 * 3_600_000))  # 25 h old
    now[0] += 61_000
    box.add(Stream.READINGS, rows(5, start_ts=now[0]))
    assert box.stats().dropped == 10
    assert box.stats().pending == 5 + 1  # five readings and the overflow event


def test_rejected_input_is_kept_with_its_reason(tmp_path: Path) -> None:
    box = make(tmp_path / "o.sqlite")
    box.reject("ct-probe", "checksum mismatch", b"$TMP,01,-1x.3,OK*3A")
    assert box.rejects() == [
        (box.rejects()[0][0], "ct-probe", "checksum mismatch", b"$TMP,01,-1x.3,OK*3A")
    ]
    assert box.stats().rejects == 1


def test_behind_counts_only_what_waits_longer_than_the_cycle_in_hand(tmp_path: Path) -> None:
    clock = [NOW - 600_000]
    box = make(tmp_path / "o.sqlite", clock=lambda: clock[0])
    box.add(Stream.READINGS, rows(30, start_ts=NOW - 600_000))  # ten minutes ago
    box.seal(Stream.READINGS, limit=10)  # sealed then, never acknowledged
    clock[0] = NOW
    box.add(Stream.READINGS, rows(5, start_ts=NOW))  # the cycle being sent
    behind, oldest = box.behind(NOW - 60_000)
    assert (behind, oldest) == (30, NOW - 600_000)
    assert box.behind(NOW - 900_000) == (0, None)
    box.close()


def test_a_truncated_outbox_is_moved_aside_and_a_new_epoch_starts(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = make(path)
    box.add(Stream.READINGS, rows(2000))
    old_epoch = box.epoch
    box.close()
    size = path.stat().st_size
    with path.open("r+b") as f:  # a power cut's damage: half the file
        f.truncate(size // 2)
    (tmp_path / "o.sqlite-wal").unlink(missing_ok=True)
    again = make(path, clock=lambda: old_epoch + 1000)
    assert again.epoch == old_epoch + 1000
    assert again.replaced is not None and "unusable" in again.replaced
    aside = [p.name for p in tmp_path.iterdir() if ".unusable-" in p.name]
    assert aside and aside[0] in again.replaced  # kept for inspection, and named
    again.add(Stream.READINGS, rows(1))  # and it works
    assert again.stats().pending == 1


def test_a_garbled_header_is_moved_aside_too(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    make(path).close()
    with path.open("r+b") as f:
        f.write(b"not a database at all")
    again = make(path)
    assert again.replaced is not None and "moved aside" in again.replaced


def test_a_deleted_outbox_is_news_not_a_first_start(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    first = make(path)
    epoch = first.epoch
    first.close()
    assert make(tmp_path / "fresh.sqlite").replaced is None  # a first start is quiet
    for part in ("o.sqlite", "o.sqlite-wal", "o.sqlite-shm"):
        (tmp_path / part).unlink(missing_ok=True)
    again = make(path)
    assert again.replaced is not None and f"epoch {epoch} is gone" in again.replaced


def test_an_outbox_that_lost_its_first_wal_is_news_not_a_new_epoch_in_silence(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    script = (
        "import os, sys, pathlib\n"
        "from tests.test_outbox import make, rows\n"
        "from coldchain.wire import Stream\n"
        "box = make(pathlib.Path(sys.argv[1]))\n"
        "box.add(Stream.READINGS, rows(5)); box.seal(Stream.READINGS)\n"
        "print(box.epoch, flush=True)\n"
        "os._exit(0)  # a power cut: nothing checkpointed, all of it in the -wal\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, check=True, timeout=60
    )
    epoch = int(out.stdout)
    for part in ("o.sqlite-wal", "o.sqlite-shm"):
        (tmp_path / part).unlink()
    again = make(path)
    assert again.epoch != epoch
    assert again.replaced is not None and f"epoch {epoch} went back" in again.replaced


def test_an_outbox_that_went_back_in_time_skips_the_seqs_the_store_holds(tmp_path: Path) -> None:
    box = make(tmp_path / "o.sqlite")
    box.add(Stream.READINGS, rows(3))
    box.seal(Stream.READINGS, limit=1)  # seq 1; the store says it holds up to 5
    assert box.catch_up(Stream.READINGS, 5) == 2
    assert box.catch_up(Stream.READINGS, 5) is None
    nxt = box.seal(Stream.READINGS, limit=1)
    assert nxt is not None and nxt.seq == 6  # no seq names two payloads


def test_a_backlog_of_long_fault_readings_goes_in_messages_under_the_wire_bound(
    tmp_path: Path,
) -> None:
    box = make(tmp_path / "o.sqlite", max_rows=10_000)
    body = wire.encode(
        Reading(
            sensor="cr1-th.temp",
            ts_ms=NOW,
            q=Quality.FAULT,
            fault="探头故障" * 64,
            quantity=wire.Quantity.TEMP_C,
        )
    )
    box.add(Stream.READINGS, [(NOW + i, body) for i in range(3000)])
    sizes, taken = [], 0
    while (sealed := box.seal(Stream.READINGS, limit=5000)) is not None:
        assert len(sealed.payload) <= wire.MAX_PAYLOAD_BYTES
        sizes.append(sealed.n)
        taken += len(wire.decode(Stream.READINGS, sealed.payload).readings)  # type: ignore[union-attr]
    assert taken == sum(sizes) == 3000 and len(sizes) > 1
