"""Edge time: the time a reading is stamped with, and how far off it is.

:class:`EdgeClock` gives wall time that never goes backwards. It follows the wall clock
forward at once (NTP setting a clock that was behind). When the wall clock steps back
(a Raspberry Pi without a real-time clock set right after a power cut, a clock set by
hand) the stamps do not go back with it: they go on at half the monotonic clock's rate
until the wall clock has caught up, so every sensor's stamps keep increasing and rejoin
true time within twice the step. A step back larger than ``max_slew_ms`` is not a glitch
but a clock set to another time: the stamps follow it (the store keeps a reading that
shares a timestamp with an older one, see docs/design-zero-loss.md) and it is reported.

:class:`ClockCheck` compares the gateway's wall clock with a reference it has: the
collector's clock carried on each live ``stored`` watermark, and the UTC of a GPS
receiver's fixes on trucks. Past ``tolerance_ms`` it reports a ``clock`` event (``off``,
with how far and against what) and the heartbeat carries the offset; within half the
tolerance again it reports ``ok``. The heartbeat also says whether the kernel knows the
clock to be kept synchronized by NTP (``clock_ntp_synced``). It never corrects the
clock: the operator's alarm says to fix it (the stamps stay what the gateway measured).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

#: the largest step back absorbed by slowing the stamps down
MAX_SLEW_MS: Final = 10 * 60_000
#: the rate of the stamps while the wall clock is behind them
SLEW_RATE: Final = 0.5


def _wall_ms() -> float:
    return time.time_ns() / 1_000_000


def _monotonic_ms() -> float:
    return time.monotonic_ns() / 1_000_000


class EdgeClock:
    def __init__(
        self,
        wall: Callable[[], float] = _wall_ms,
        monotonic: Callable[[], float] = _monotonic_ms,
        *,
        max_slew_ms: int = MAX_SLEW_MS,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self.max_slew_ms = max_slew_ms
        self._last = 0.0
        self._last_mono = monotonic()
        #: steps back seen, and the latest one's size (the heartbeat reports them)
        self.steps_back = 0
        self.last_step_back_ms = 0
        self._slewing = False
        self._lock = threading.Lock()
        #: called with the size of a step back when one begins (an event)
        self.on_step_back: Callable[[int, bool], None] | None = None

    def start_from(self, floor_ms: int) -> None:
        """Never stamp before ``floor_ms`` (the newest time the outbox has seen): a
        restart with a clock set back does not repeat the stamps before it."""
        if floor_ms > self._last:
            self._last = float(floor_ms)
            self._last_mono = self._monotonic()

    def now_ms(self) -> int:
        """The next stamp. Thread-safe: the buses stamp on the event loop, the outbox
        on its worker thread; ``on_step_back`` is called on the thread that saw it."""
        with self._lock:
            stamp, step = self._advance()
        if step is not None and self.on_step_back is not None:
            self.on_step_back(*step)  # told after the stamp is settled: it may stamp
        return stamp

    def _advance(self) -> tuple[int, tuple[int, bool] | None]:
        wall, mono = self._wall(), self._monotonic()
        elapsed = max(0.0, mono - self._last_mono)
        self._last_mono = mono
        behind = self._last - wall
        step: tuple[int, bool] | None = None
        size = int(behind + elapsed)  # how far the wall clock went back
        if behind < 0:
            self._slewing = False
            self._last = wall
        elif behind > self.max_slew_ms + elapsed:
            step, self._slewing, self._last = (size, False), False, wall
        else:
            if not self._slewing and behind > max(1000.0, elapsed):
                step, self._slewing = (size, True), True
            self._last += elapsed * SLEW_RATE
        if step is not None:
            self.steps_back += 1
            self.last_step_back_ms = step[0]
        return int(self._last), step


#: adjtimex(2)'s state for a clock the kernel does not know to be synchronized
_TIME_ERROR: Final = 5


@functools.cache
def _libc() -> ctypes.CDLL:
    """Found once: find_library may run ldconfig, not a thing to do every heartbeat."""
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def ntp_synchronized() -> bool | None:
    """Whether the kernel says an NTP client keeps the clock synchronized (adjtimex(2),
    read only); None where that cannot be asked (not Linux)."""
    try:
        state = int(_libc().adjtimex(ctypes.create_string_buffer(512)))  # modes 0: read
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != _TIME_ERROR


#: the process's edge clock: every stamp of a gateway comes from it
CLOCK: Final = EdgeClock()


def now_ms() -> int:
    return CLOCK.now_ms()


def describe_span(span_ms: int) -> str:
    """'10 min 3 s', '1 d 0 h': a span as a person reads it."""
    s = round(abs(span_ms) / 1000)
    if s >= 86_400:
        return f"{s // 86_400} d {s % 86_400 // 3600} h"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"


def describe_offset(offset_ms: int) -> str:
    """'10 min 3 s ahead', '1 d 0 h behind': how a person reads a clock's error."""
    return f"{describe_span(offset_ms)} {'ahead' if offset_ms > 0 else 'behind'}"


@dataclass
class ClockCheck:
    """The gateway's clock against a reference; ``report(state, detail)`` is called once
    per change between ``ok`` and ``off``."""

    report: Callable[[str, str], object]
    tolerance_ms: int = 60_000
    #: the wall clock, not the stamps: after a step back the stamps take a while to
    #: follow, the clock's error is there at once
    wall: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    #: the latest offset (the gateway's clock minus the reference), and against what
    offset_ms: int | None = None
    source: str | None = None
    off: bool = False
    checks: int = 0

    def observe(self, reference_ms: int, source: str) -> None:
        """A reference time just received (a live watermark, a GPS fix)."""
        self.checks += 1
        self.offset_ms, self.source = self.wall() - reference_ms, source
        size = abs(self.offset_ms)
        if not self.off and size > self.tolerance_ms:
            self.off = True
            against = "of the" if self.offset_ms > 0 else "the"
            self.report("off", f"{describe_offset(self.offset_ms)} {against} {source}'s clock")
        elif self.off and size < self.tolerance_ms // 2:
            self.off = False
            self.report("ok", f"within {size // 1000} s of the {source}'s clock")

    def stats(self) -> dict[str, int]:
        """For the heartbeat: how far ahead or behind (wire counts are not negative)."""
        synced = ntp_synchronized()
        found = {} if synced is None else {"clock_ntp_synced": int(synced)}
        if self.offset_ms is None:
            return found
        return {
            **found,
            "clock_ahead_ms": max(0, self.offset_ms),
            "clock_behind_ms": max(0, -self.offset_ms),
        }
