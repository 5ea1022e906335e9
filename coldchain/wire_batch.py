"""Batch payloads: a batch of readings or events built from rows already encoded one
by one (the gateway's outbox rows), as version 1 JSON (:func:`assemble`) or, for
readings, in the compact version 2 (:func:`compact`, read back by :func:`expand`);
docs/wire-contract.md.

Trucks pay for mobile data by the megabyte. A version 1 batch repeats, for every
reading, its field names, its sensor's id, a 13-digit timestamp and ``"q":"ok"``. A
version 2 batch names each sensor (and its measurand) once, carries the readings as
columns (sensor index, time after the previous reading, value), lists only the readings
whose quality is not ``ok``, and is compressed (zlib, RFC 1950): at the reference load
(100 readings a second) it takes about a tenth of the bytes.

A version 2 payload is the zlib stream of a JSON object; it begins with the byte 0x78,
where a version 1 payload begins with ``{``. :func:`coldchain.wire.decode` reads both
and hands the consumer the same :class:`~coldchain.wire.ReadingsBatch`, validated by
the same rules: nothing behind the broker knows which one came.
"""

from __future__ import annotations

import zlib
from typing import Annotated, Any, Final, Literal

import msgspec

from coldchain.wire import (
    BATCH_HEAD_BYTES,
    MAX_ITEMS,
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    Id,
    Quality,
    Quantity,
    Reading,
    ReadingsBatch,
    Seq,
    Stream,
    TimestampMs,
    WireError,
)

COMPACT_VERSION: Final = 2
#: the first byte of a zlib stream with the usual 32 KiB window
ZLIB_HEADER: Final = 0x78

Delta = Annotated[int, msgspec.Meta(ge=-(2**53), le=2**53)]
#: a value: a number, a bool, null (a fault), or a position's
#: [lat, lon, speed, course, sats, hdop] with the trailing nulls left out
Value = float | bool | None | list[float | None]


class CompactReadings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    v: int
    gateway: Id
    site: Id
    epoch: TimestampMs
    seq: Seq
    #: the first reading's time; each ``dt`` is from the reading before
    t0: TimestampMs
    #: each (sensor, measurand) once
    sensors: Annotated[list[Id], msgspec.Meta(max_length=MAX_ITEMS)]
    kinds: Annotated[list[Quantity], msgspec.Meta(max_length=MAX_ITEMS)]
    dt: Annotated[list[Delta], msgspec.Meta(max_length=MAX_ITEMS)]
    val: Annotated[list[Value], msgspec.Meta(max_length=MAX_ITEMS)]
    #: each reading's sensor index; left out when the readings are the sensors in order
    #: (one poll: each sensor once), the common case
    i: Annotated[list[int], msgspec.Meta(max_length=MAX_ITEMS)] = []
    #: the readings whose quality is not ok: [reading index, quality, fault reason]
    bad: list[tuple[int, Quality, str | None]] = []
    held_from: Seq | None = None


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(CompactReadings)
_reading_decoder: Final = msgspec.json.Decoder(Reading)
_POSITION_FIELDS: Final = ("lat_deg", "lon_deg", "speed_kmh", "course_deg", "sats", "hdop")


def is_compact(payload: bytes) -> bool:
    return payload[:1] == bytes((ZLIB_HEADER,))


def compact(
    *,
    gateway: str,
    site: str,
    epoch: int,
    seq: int,
    bodies: list[bytes],
    held_from: int | None = None,
) -> bytes:
    """A version 2 payload from readings already encoded one by one (the outbox's rows)."""
    readings = [_reading_decoder.decode(body) for body in bodies]
    index: dict[tuple[str, Quantity], int] = {}
    columns: dict[str, list[Any]] = {"i": [], "dt": [], "val": []}
    bad: list[tuple[int, Quality, str | None]] = []
    previous = readings[0].ts_ms if readings else 0
    for n, r in enumerate(readings):
        quantity, value = r.measure()
        columns["i"].append(index.setdefault((r.sensor, quantity), len(index)))
        columns["dt"].append(r.ts_ms - previous)
        previous = r.ts_ms
        if quantity is Quantity.POSITION and r.lat_deg is not None:
            position = [getattr(r, name) for name in _POSITION_FIELDS]
            while position[-1] is None:
                position.pop()
            value = position  # type: ignore[assignment]
        columns["val"].append(value)
        if r.q is not Quality.OK:
            bad.append((n, r.q, r.fault))
    if columns["i"] == list(range(len(readings))):
        columns["i"] = []  # each sensor once, in order: the index says nothing
    batch = CompactReadings(
        v=COMPACT_VERSION,
        gateway=gateway,
        site=site,
        epoch=epoch,
        seq=seq,
        t0=readings[0].ts_ms if readings else 0,
        sensors=[sensor for sensor, _ in index],
        kinds=[quantity for _, quantity in index],
        bad=bad,
        held_from=held_from,
        **columns,
    )
    return zlib.compress(_encoder.encode(batch), 9)


def expand(payload: bytes) -> ReadingsBatch:
    """The readings batch a version 2 payload carries; WireError with the reason."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError(f"{len(payload)} bytes, more than a message may have", "too_large")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(payload, MAX_PAYLOAD_BYTES)
    except zlib.error as exc:
        raise WireError(f"not a zlib stream: {exc}", "json") from None
    if inflater.unconsumed_tail:
        raise WireError(f"expands past the {MAX_PAYLOAD_BYTES} bytes a batch may have", "too_large")
    if not inflater.eof:
        raise WireError("a truncated zlib stream", "json")
    try:
        batch = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise WireError(f"does not follow the compact readings schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise WireError(f"not valid JSON: {exc}", "json") from None
    if batch.v != COMPACT_VERSION:
        raise WireError(f"schema version {batch.v} is not {COMPACT_VERSION}", "version")
    return ReadingsBatch(
        v=COMPACT_VERSION,
        gateway=batch.gateway,
        site=batch.site,
        epoch=batch.epoch,
        seq=batch.seq,
        readings=_readings(batch),
        held_from=batch.held_from,
    )


def _readings(batch: CompactReadings) -> list[Reading]:
    count = len(batch.dt)
    sensor_of = batch.i or list(range(len(batch.sensors)))
    if not (len(sensor_of) == len(batch.val) == count) or len(batch.kinds) != len(batch.sensors):
        raise WireError("columns of different lengths")
    quality: dict[int, tuple[Quality, str | None]] = {n: (q, f) for n, q, f in batch.bad}
    items: list[dict[str, Any]] = []
    ts = batch.t0
    for n in range(count):
        k = sensor_of[n]
        if not 0 <= k < len(batch.sensors):
            raise WireError(f"reading {n} names sensor {k} of {len(batch.sensors)}")
        ts += batch.dt[n]
        q, fault = quality.get(n, (Quality.OK, None))
        item: dict[str, Any] = {"sensor": batch.sensors[k], "ts_ms": ts, "q": q}
        if fault is not None:
            item["fault"] = fault
        kind, value = batch.kinds[k], batch.val[n]
        if value is None:
            item["quantity"] = kind
        elif kind is Quantity.POSITION:
            if not isinstance(value, list) or not 2 <= len(value) <= len(_POSITION_FIELDS):
                raise WireError(f"reading {n}: a position is [lat, lon, …]")
            item.update(zip(_POSITION_FIELDS, value, strict=False))
            if isinstance(item.get("sats"), float) and item["sats"].is_integer():
                item["sats"] = int(item["sats"])  # JSON has one kind of number
        else:
            item[kind.value] = value
        items.append(item)
    try:  # the same rules as a version 1 batch: bounds, ids, one measurand each
        readings = msgspec.convert(items, list[Reading])
    except msgspec.ValidationError as exc:
        raise WireError(f"does not follow the readings schema: {exc}") from None
    for reading in readings:
        reading.measure()
    return readings


Encoding = Literal["json", "compact"]


def batch_payload(
    stream: Stream,
    encoding: Encoding,
    *,
    gateway: str,
    site: str,
    epoch: int,
    seq: int,
    bodies: list[bytes],
    held_from: int | None = None,
) -> bytes:
    """A batch of ``stream`` in ``encoding`` (compact is for readings: events stay JSON)."""
    if stream is Stream.READINGS and encoding == "compact":
        return compact(
            gateway=gateway, site=site, epoch=epoch, seq=seq, bodies=bodies, held_from=held_from
        )
    return assemble(
        stream, gateway=gateway, site=site, epoch=epoch, seq=seq, bodies=bodies, held_from=held_from
    )


def bodies_that_fit(bodies: list[bytes]) -> int:
    """How many of the first bodies fit one batch under MAX_PAYLOAD_BYTES (at least one:
    a single reading or event is far below it, its fields being bounded)."""
    room = MAX_PAYLOAD_BYTES - BATCH_HEAD_BYTES
    for count, body in enumerate(bodies):
        room -= len(body) + 1
        if room < 0:
            return max(count, 1)
    return len(bodies)


def assemble(
    stream: Stream,
    *,
    gateway: str,
    site: str,
    epoch: int,
    seq: int,
    bodies: list[bytes],
    held_from: int | None = None,
) -> bytes:
    """Build a batch payload from already-encoded readings or events (no re-encoding)."""
    if stream not in (Stream.READINGS, Stream.EVENTS):
        raise WireError(f"{stream} is not a batch")
    items = "readings" if stream is Stream.READINGS else "events"
    fields: dict[str, object] = {
        "v": SCHEMA_VERSION,
        "gateway": gateway,
        "site": site,
        "epoch": epoch,
        "seq": seq,
    }
    if held_from is not None:
        fields["held_from"] = held_from
    head = _encoder.encode(fields)
    return b"".join((head[:-1], b',"', items.encode(), b'":[', b",".join(bodies), b"]}"))
