"""Edge time: stamps that never go back, and a clock checked against a reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from coldchain.wire import Stream
from gateway.clock import ClockCheck, EdgeClock, describe_offset
from gateway.nmea import rmc_utc_ms
from tests.test_outbox import make, rows

T0 = 1_795_437_600_000


@dataclass
class Clocks:
    """A wall clock that can be set, and a monotonic clock that only runs."""

    wall: float = float(T0)
    mono: float = 0.0
    steps: list[tuple[int, bool]] = field(default_factory=list)

    def run(self, ms: float) -> None:
        self.wall += ms
        self.mono += ms

    def edge(self, **kwargs: int) -> EdgeClock:
        clock = EdgeClock(lambda: self.wall, lambda: self.mono, **kwargs)
        clock.on_step_back = lambda step, absorbed: self.steps.append((step, absorbed))
        return clock


def test_a_clock_stepped_back_120_s_never_repeats_a_stamp_and_rejoins_the_wall_clock() -> None:
    c = Clocks()
    clock = c.edge()
    stamps = []
    for _ in range(60):  # a poll a second
        stamps.append(clock.now_ms())
        c.run(1000)
    c.wall -= 120_000  # a Raspberry Pi set back after a power cut
    for _ in range(300):
        stamps.append(clock.now_ms())
        c.run(1000)
    assert all(b > a for a, b in pairwise(stamps))
    assert c.steps == [(120_000, True)] and clock.steps_back == 1
    # half speed while behind: caught up within twice the step, then the wall clock again
    assert stamps[-1] == int(c.wall - 1000)
    assert stamps[60 + 240] - stamps[60 + 239] == 1000


def test_a_clock_set_forward_is_followed_at_once() -> None:
    c = Clocks()
    clock = c.edge()
    clock.now_ms()
    c.run(1000)
    c.wall += 3_600_000
    assert clock.now_ms() == int(c.wall)
    assert c.steps == []


def test_a_step_back_past_what_can_be_absorbed_is_followed_and_reported() -> None:
    c = Clocks()
    clock = c.edge(max_slew_ms=600_000)
    clock.now_ms()
    c.run(1000)
    c.wall -= 86_400_000  # set to yesterday
    assert clock.now_ms() == int(c.wall)
    assert c.steps == [(86_400_000, False)]


def test_a_restart_never_stamps_before_the_newest_time_of_its_outbox(tmp_path: Path) -> None:
    c = Clocks()
    box = make(tmp_path / "o.sqlite", clock=c.edge().now_ms)
    box.add(Stream.READINGS, rows(3, start_ts=int(T0)))
    msg = box.seal(Stream.READINGS)
    assert msg is not None
    box.confirm(Stream.READINGS, msg.seq)  # gone from the outbox: the floor stays
    box.close()
    c.wall -= 30_000  # the restart came back with a clock behind
    reopened = make(tmp_path / "o.sqlite")
    assert reopened.newest_ms == int(T0)
    clock = c.edge()
    clock.start_from(reopened.newest_ms)
    assert clock.now_ms() >= int(T0)


def test_the_clock_check_reports_once_when_off_and_once_when_right_again() -> None:
    told: list[tuple[str, str]] = []
    wall = [T0]
    check = ClockCheck(
        lambda state, detail: told.append((state, detail)), 60_000, wall=lambda: wall[0]
    )
    for offset in (1_000, 603_000, 601_000, 45_000, 20_000, 10_000):
        wall[0] = T0 + offset
        check.observe(T0, "collector")
    assert told == [
        ("off", "10 min 3 s ahead of the collector's clock"),
        ("ok", "within 20 s of the collector's clock"),
    ]
    wall[0] = T0 - 86_400_000
    check.observe(T0, "GPS receiver")
    assert told[-1] == ("off", "1 d 0 h behind the GPS receiver's clock")
    stats = check.stats()
    assert (stats["clock_ahead_ms"], stats["clock_behind_ms"]) == (0, 86_400_000)
    # the kernel's word on NTP, as adjtimex(2) gives it on Linux
    assert stats["clock_ntp_synced"] in (0, 1)


def test_offsets_read_as_people_say_them() -> None:
    assert describe_offset(-130_000) == "2 min 10 s behind"
    assert describe_offset(7_500_000) == "2 h 5 min ahead"
    assert describe_offset(5_000) == "5 s ahead"


def test_an_rmc_fix_gives_the_receivers_utc() -> None:
    assert rmc_utc_ms("081530.25", "011226") == 1_796_112_930_250
    assert rmc_utc_ms("081530", "011226") == 1_796_112_930_000
    assert rmc_utc_ms("", "011226") is None
    assert rmc_utc_ms("081530.00", "321326") is None
