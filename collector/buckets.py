"""A sensor's history in buckets for the charts (docs/design-history.md): per bucket the
count, min, mean and max of its good readings and how many were faults, so that an
excursion shorter than a bucket still shows at its full height.

Buckets are aligned on the range's start and have a round width. The SQLite store
computes them in SQL (:meth:`collector.sqlite_store.SqliteStore.buckets`); any other
store through :func:`aggregate` over its readings.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from coldchain.wire import Quality
from collector.store import StoredReading

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: an hour this long past is settled: its roll-up may be kept (a live reading never
#: lands in it; a late one drops it)
SETTLE_MS = 2 * HOUR_MS
#: the widths a bucket may have: what a person reads on an axis
WIDTHS_MS = [
    m * MINUTE_MS for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)
]
#: a reading of these qualities has a value to draw (out of range is a broken probe)
DRAWN = frozenset({Quality.OK.value, Quality.CLOCK_SUSPECT.value})


@dataclass(slots=True)
class Bucket:
    start_ms: int
    n: int
    min: float | None
    mean: float | None
    max: float | None
    #: readings without a value to draw (faults, out of range)
    faults: int = 0

    def merge(self, other: Bucket) -> None:
        """Another part of the same bucket (another calibration period) into this one."""
        if other.n and other.min is not None and other.max is not None:
            total = (self.mean or 0.0) * self.n + (other.mean or 0.0) * other.n
            self.min = other.min if self.min is None else min(self.min, other.min)
            self.max = other.max if self.max is None else max(self.max, other.max)
            self.n += other.n
            self.mean = total / self.n
        self.faults += other.faults

    def shifted(self, offset: float) -> Bucket:
        """With a calibration correction added to its values."""
        if not offset or self.n == 0:
            return self
        return Bucket(
            self.start_ms,
            self.n,
            None if self.min is None else self.min + offset,
            None if self.mean is None else self.mean + offset,
            None if self.max is None else self.max + offset,
            self.faults,
        )


def combined(parts: Iterable[Bucket]) -> list[Bucket]:
    """Parts of buckets (of calibration periods, of roll-ups and readings) merged by start."""
    merged: dict[int, Bucket] = {}
    for b in parts:
        if b.start_ms in merged:
            merged[b.start_ms].merge(b)
        else:
            merged[b.start_ms] = b
    return [merged[k] for k in sorted(merged)]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def bucket_width(span_ms: int, points: int) -> int:
    """The smallest round width that draws ``span_ms`` in at most ``points`` buckets."""
    wanted = span_ms / max(points, 1)
    return next((w for w in WIDTHS_MS if w >= wanted), WIDTHS_MS[-1])


def aggregate(readings: Iterable[StoredReading], start_ms: int, width_ms: int) -> list[Bucket]:
    """Buckets of readings in time order (any store)."""
    out: dict[int, Bucket] = {}
    for r in readings:
        k = (r.ts_ms - start_ms) // width_ms
        b = out.get(k)
        if b is None:
            b = out[k] = Bucket(start_ms + k * width_ms, 0, None, None, None)
        value = r.value if isinstance(r.value, (int, float)) else None
        if value is None or r.q.value not in DRAWN:
            b.faults += 1
            continue
        b.merge(Bucket(b.start_ms, 1, float(value), float(value), float(value)))
    return [out[k] for k in sorted(out)]
