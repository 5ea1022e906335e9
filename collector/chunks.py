"""The compact form of a sensor's day of readings (docs/design-history.md, "The compact
store"): columns, each coded for what it holds, in one zlib stream.

- times: the first time, then the change of the step from one reading to the next
  (zero for a sensor read on a steady beat);
- values and positions: fixed-point integers at the fewest decimals that give every
  value back exactly, as steps from the one before (floats as they are when no number of
  decimals does); a value that is absent (a fault) is a zero in a presence column;
- names (site, quantity, quality, fault): a dictionary of the day, and an index each;
- ``dup`` and the arrival time (as the delay after the reading's own time) as they are.

Integer columns are zigzag-coded and stored byte plane by byte plane: the high planes of
small numbers are all zero, which zlib squeezes to almost nothing. Everything a row of
``readings`` holds comes back bit for bit (:func:`decode` of :func:`encode`, a NaN and a
-0.0 included); the compaction checks it before it deletes a row.

The 1-minute roll-ups of a day (:func:`encode_minutes`) are kept the same way: per minute
with readings, the count of good readings, their min, max and sum, and the faults.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from collector.buckets import DRAWN, MINUTE_MS

FORMAT = 1
#: decimals tried for a fixed-point column (a probe reads to 0.1 or 0.01 °C; a GPS
#: position to 1e-6 degree)
DECIMALS = range(7)
#: a fixed-point integer stays below this (its steps then fit the 64-bit planes)
LARGEST = 2**52


class DamagedChunk(ValueError):
    """A stored chunk that does not decode: it is kept, named, never deleted."""


class Row(NamedTuple):
    """A reading as the ``readings`` table holds it, less its gateway and sensor."""

    ts_ms: int
    dup: int
    site: str
    quantity: str
    value: float | None
    q: str
    fault: str | None
    lat_deg: float | None
    lon_deg: float | None
    speed_kmh: float | None
    received_ms: int
    course_deg: float | None = None
    #: a position's fix quality: satellites used, horizontal dilution of precision
    sats: int | None = None
    hdop: float | None = None


class Minute(NamedTuple):
    """One minute's roll-up: good readings (count, min, max, sum) and faults."""

    minute_ms: int
    n: int
    lo: float | None
    hi: float | None
    total: float | None
    bad: int


# ---------------------------------------------------------------------- integer columns
def _zigzag(values: Iterable[int]) -> list[int]:
    return [(v << 1) if v >= 0 else ((-v) << 1) - 1 for v in values]


def _unzigzag(values: Iterable[int]) -> list[int]:
    return [(z >> 1) ^ -(z & 1) for z in values]


def _planes(values: Sequence[int]) -> bytes:
    """Unsigned 64-bit integers, byte plane by byte plane (all the low bytes first)."""
    raw = array("Q", values)
    if sys.byteorder == "big":
        raw.byteswap()
    data = raw.tobytes()
    return b"".join(data[i::8] for i in range(8))


def _unplanes(data: bytes, n: int) -> list[int]:
    if len(data) != 8 * n:
        raise DamagedChunk(f"an integer column of {len(data)} bytes for {n} values")
    out = bytearray(8 * n)
    for i in range(8):
        out[i::8] = data[i * n : (i + 1) * n]
    raw = array("Q")
    raw.frombytes(bytes(out))
    if sys.byteorder == "big":
        raw.byteswap()
    return raw.tolist()


def _deltas(values: Sequence[int]) -> list[int]:
    return [b - a for a, b in zip(itertools.chain((0,), values), values, strict=False)]


def _ints(values: Sequence[int], *, steps: int = 0) -> bytes:
    """Signed integers, as steps ``steps`` times over (1: changes, 2: changes of change)."""
    coded = list(values)
    for _ in range(steps):
        coded = _deltas(coded)
    return _planes(_zigzag(coded))


def _unints(data: bytes, n: int, *, steps: int = 0) -> list[int]:
    values = _unzigzag(_unplanes(data, n))
    for _ in range(steps):
        values = list(itertools.accumulate(values))
    return values


# ---------------------------------------------------------------------- number columns
def _decimals(values: Sequence[float]) -> int | None:
    """The fewest decimals at which every value comes back exactly, if any."""
    for d in DECIMALS:
        scale = 10**d
        try:
            if all(
                abs(v) * scale < LARGEST
                and round(v * scale) / scale == v
                and (v or math.copysign(1.0, v) > 0)  # -0.0 stays -0.0: as a float
                for v in values
            ):
                return d
        except (OverflowError, ValueError):  # inf or nan: as floats
            return None
    return None


def _numbers(values: Sequence[float | None], header: dict[str, object], name: str) -> bytes:
    present = [v for v in values if v is not None]
    mask = bytes(v is not None for v in values)
    d = _decimals(present)
    header[name] = d
    if d is None:
        raw = array("d", present)
        body = _planes(array("Q", raw.tobytes()).tolist())
    else:
        scale = 10**d
        body = _ints([round(v * scale) for v in present], steps=1)
    return mask + body


def _unnumbers(data: bytes, n: int, d: int | None) -> list[float | None]:
    mask, body = data[:n], data[n:]
    k = sum(mask)
    if d is None:
        raw = array("Q", _unplanes(body, k))
        present: list[float] = array("d", raw.tobytes()).tolist()
    else:
        scale = 10**d
        present = [i / scale for i in _unints(body, k, steps=1)]
    values = iter(present)
    return [next(values) if flag else None for flag in mask]


def _optional_ints(values: Sequence[int | None]) -> bytes:
    return bytes(v is not None for v in values) + _ints([v for v in values if v is not None])


def _unoptional_ints(data: bytes, n: int) -> list[int | None]:
    mask = data[:n]
    present = iter(_unints(data[n:], sum(mask)))
    return [next(present) if flag else None for flag in mask]


def _names(values: Sequence[str | None], header: dict[str, object], name: str) -> bytes:
    found: dict[str | None, int] = {}
    codes = [found.setdefault(v, len(found)) for v in values]
    header[name] = list(found)
    return _ints(codes)


def _unnames(data: bytes, n: int, names: list[str | None]) -> list[str | None]:
    try:
        return [names[i] for i in _unints(data, n)]
    except IndexError:
        raise DamagedChunk("a name index past its dictionary") from None


# ---------------------------------------------------------------------- the envelope
#: what a misread column raises
_MISREAD = (IndexError, KeyError, TypeError, ValueError, StopIteration)


def _damaged(exc: Exception) -> DamagedChunk:
    return exc if isinstance(exc, DamagedChunk) else DamagedChunk(f"{type(exc).__name__}: {exc}")


def _pack(header: dict[str, object], columns: list[bytes]) -> bytes:
    header["sizes"] = [len(c) for c in columns]
    head = json.dumps(header, separators=(",", ":")).encode()
    return zlib.compress(struct.pack("<BI", FORMAT, len(head)) + head + b"".join(columns), 9)


def _unpack(blob: bytes) -> tuple[dict[str, object], list[bytes]]:
    try:
        data = zlib.decompress(blob)
        version, size = struct.unpack_from("<BI", data)
        if version != FORMAT:
            raise DamagedChunk(f"format {version}, this build reads {FORMAT}")
        header = json.loads(data[5 : 5 + size])
        columns, at = [], 5 + size
        for length in header["sizes"]:
            columns.append(data[at : at + length])
            at += length
    except (zlib.error, struct.error, *_MISREAD) as exc:
        raise _damaged(exc) from None
    if at != len(data):
        raise DamagedChunk(f"{len(data) - at} bytes past its columns")
    return header, columns


def encode(rows: Sequence[Row]) -> bytes:
    """A day's rows, in (ts_ms, dup) order, as one blob."""
    header: dict[str, object] = {"n": len(rows)}
    columns = [
        _ints([r.ts_ms for r in rows], steps=2),
        _ints([r.dup for r in rows]),
        _ints([r.received_ms - r.ts_ms for r in rows], steps=1),
        _names([r.site for r in rows], header, "site"),
        _names([r.quantity for r in rows], header, "quantity"),
        _names([r.q for r in rows], header, "q"),
        _names([r.fault for r in rows], header, "fault"),
        _numbers([r.value for r in rows], header, "value"),
        _numbers([r.lat_deg for r in rows], header, "lat"),
        _numbers([r.lon_deg for r in rows], header, "lon"),
        _numbers([r.speed_kmh for r in rows], header, "speed"),
        _numbers([r.course_deg for r in rows], header, "course"),
        _optional_ints([r.sats for r in rows]),
        _numbers([r.hdop for r in rows], header, "hdop"),
    ]
    return _pack(header, columns)


def decode(blob: bytes) -> list[Row]:
    header, cols = _unpack(blob)
    try:
        n = int(header["n"])  # type: ignore[call-overload]
        ts = _unints(cols[0], n, steps=2)
        delays = _unints(cols[2], n, steps=1)
        received = [t + delay for t, delay in zip(ts, delays, strict=True)]
        parts = (
            ts,
            _unints(cols[1], n),
            _unnames(cols[3], n, header["site"]),  # type: ignore[arg-type]
            _unnames(cols[4], n, header["quantity"]),  # type: ignore[arg-type]
            _unnumbers(cols[7], n, header["value"]),  # type: ignore[arg-type]
            _unnames(cols[5], n, header["q"]),  # type: ignore[arg-type]
            _unnames(cols[6], n, header["fault"]),  # type: ignore[arg-type]
            _unnumbers(cols[8], n, header["lat"]),  # type: ignore[arg-type]
            _unnumbers(cols[9], n, header["lon"]),  # type: ignore[arg-type]
            _unnumbers(cols[10], n, header["speed"]),  # type: ignore[arg-type]
            received,
            _unnumbers(cols[11], n, header["course"]),  # type: ignore[arg-type]
            _unoptional_ints(cols[12], n),
            _unnumbers(cols[13], n, header["hdop"]),  # type: ignore[arg-type]
        )
        return [Row(*fields) for fields in zip(*parts, strict=True)]
    except _MISREAD as exc:
        raise _damaged(exc) from None


# ---------------------------------------------------------------------- roll-ups
def minutes_of(rows: Iterable[Row]) -> list[Minute]:
    """The 1-minute roll-ups of rows in time order."""
    out: dict[int, list[float | int | None]] = {}
    for r in rows:
        m = out.setdefault(r.ts_ms - r.ts_ms % MINUTE_MS, [0, None, None, 0.0, 0])
        if r.value is None or r.q not in DRAWN:
            m[4] += 1  # type: ignore[operator]
            continue
        m[0] += 1  # type: ignore[operator]
        m[1] = r.value if m[1] is None else min(m[1], r.value)
        m[2] = r.value if m[2] is None else max(m[2], r.value)
        m[3] += r.value  # type: ignore[operator]
    return [
        Minute(k, int(n), lo, hi, total if n else None, int(bad))  # type: ignore[arg-type]
        for k, (n, lo, hi, total, bad) in sorted(out.items())
    ]


def encode_minutes(minutes: Sequence[Minute]) -> bytes:
    header: dict[str, object] = {"n": len(minutes)}
    d = _decimals([v for m in minutes for v in (m.lo, m.hi) if v is not None])
    if d is not None:  # a sum of values of d decimals has d decimals: drop the float noise
        minutes = [m if m.total is None else m._replace(total=round(m.total, d)) for m in minutes]
    columns = [
        _ints([m.minute_ms // MINUTE_MS for m in minutes], steps=1),
        _ints([m.n for m in minutes]),
        _ints([m.bad for m in minutes]),
        _numbers([m.lo for m in minutes], header, "lo"),
        _numbers([m.hi for m in minutes], header, "hi"),
        _numbers([m.total for m in minutes], header, "total"),
    ]
    return _pack(header, columns)


def decode_minutes(blob: bytes) -> list[Minute]:
    header, cols = _unpack(blob)
    try:
        n = int(header["n"])  # type: ignore[call-overload]
        parts = (
            [k * MINUTE_MS for k in _unints(cols[0], n, steps=1)],
            _unints(cols[1], n),
            _unnumbers(cols[3], n, header["lo"]),  # type: ignore[arg-type]
            _unnumbers(cols[4], n, header["hi"]),  # type: ignore[arg-type]
            _unnumbers(cols[5], n, header["total"]),  # type: ignore[arg-type]
            _unints(cols[2], n),
        )
        return [Minute(*fields) for fields in zip(*parts, strict=True)]
    except _MISREAD as exc:
        raise _damaged(exc) from None
