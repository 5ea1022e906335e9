"""The alert service's pure core: MKT, the 2 h / 4 h rule, product profiles and rule
evaluation, by worked examples, table-driven scenarios with a controllable clock (the
edge timestamps), and properties."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.disposition import Disposition, danger_zone_ms, disposition, in_danger_zone
from alerts.mkt import MktError, mkt_c, mkt_of_series, mkt_report, read_csv, time_weights
from alerts.profiles import load_profiles
from coldchain.judging.breach import Breach, Kind, Level, Point, SeriesSettings
from coldchain.judging.door import door_open
from coldchain.judging.limits import LevelLimits
from coldchain.judging.rules import SensorEvaluator, evaluate
from coldchain.wire import Quality, Reading, ReadingsBatch
from collector.sqlite_store import SqliteStore
from collector.store import Incoming

MIN = 60_000
T0 = 1_795_392_000_000  # 2026-11-23T00:00:00Z, a window boundary for daily windows

# --------------------------------------------------------------------------- MKT


def test_mkt_worked_example_two_equal_readings() -> None:
    # 20 °C and 30 °C, equal time:  -ΔH/R/T = -34.112229 and -32.986970
    # exp(): 1.531959e-15 and 4.719988e-15, mean 3.125973e-15, ln = -33.399031
    # T = 10000 / 33.399031 = 299.4099 K = 26.2599 °C  (arithmetic mean: 25 °C)
    assert mkt_c([20.0, 30.0]) == pytest.approx(26.2599, abs=1e-4)


def test_mkt_worked_example_time_weighted() -> None:
    # 2 °C for 45 min then 8 °C for 15 min: weights 3:1
    # exp(-10000/275.15) = 1.644685e-16, exp(-10000/281.15) = 3.572121e-16
    # (3·1.644685e-16 + 3.572121e-16) / 4 = 2.126544e-16, ln = -36.086863
    # T = 277.1091 K = 3.9591 °C  (arithmetic time-weighted mean: 3.5 °C)
    series = [(0, 2.0), (15 * MIN, 2.0), (30 * MIN, 2.0), (45 * MIN, 8.0)]
    assert time_weights([t for t, _ in series]) == [15 * MIN] * 4
    assert mkt_c([2.0, 8.0], [45, 15]) == pytest.approx(3.9591, abs=1e-4)


@given(temp=st.floats(-40, 60), n=st.integers(1, 50))
def test_mkt_of_a_constant_temperature_is_that_temperature(temp: float, n: int) -> None:
    assert mkt_c([temp] * n) == pytest.approx(temp, abs=1e-6)


TEMPS = st.lists(st.floats(-40, 60), min_size=1, max_size=40)


@given(data=st.data(), temps=TEMPS)
def test_mkt_is_never_below_the_weighted_mean_and_at_most_the_maximum(data, temps) -> None:
    weights = data.draw(st.lists(st.floats(0.1, 100), min_size=len(temps), max_size=len(temps)))
    mean = sum(t * w for t, w in zip(temps, weights, strict=True)) / sum(weights)
    value = mkt_c(temps, weights)
    assert value >= mean - 1e-6
    assert value <= max(temps) + 1e-6


@given(temps=TEMPS, bump=st.floats(0.5, 20))
def test_mkt_is_pulled_towards_the_hottest_reading(temps, bump) -> None:
    hotter = [*temps[:-1], max(temps) + bump]
    assert mkt_c(hotter) > mkt_c(temps)


def test_mkt_dh_r_is_configurable_and_bad_input_is_refused() -> None:
    assert mkt_c([20.0, 30.0], dh_r_k=5000.0) < mkt_c([20.0, 30.0])
    with pytest.raises(MktError):
        mkt_c([])
    with pytest.raises(MktError):
        mkt_c([1.0, 2.0], [0.0, 0.0])


def test_mkt_reads_what_export_writes_for_one_sensor(tmp_path: Path) -> None:
    db = tmp_path / "readings.sqlite"
    store = SqliteStore(db)
    temps = [2.0, 2.5, 3.0, 7.5, 3.0]
    readings = [
        Reading(sensor=sensor, ts_ms=T0 + i * 300_000, q=Quality.OK, temp_c=t + offset)
        for i, t in enumerate(temps)
        for sensor, offset in (("cr2-ctrl.air", 0.0), ("cr2-th.temp", 1.0))
    ]
    readings.append(Reading(sensor="cr2-th.rh", ts_ms=T0, q=Quality.OK, rh_pct=90.0))
    batch = ReadingsBatch(
        v=1, gateway="store-gw", site="county-store", epoch=1, seq=1, readings=readings
    )
    store.write([Incoming(batch, T0)], [])
    store.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ops.cli", *args], capture_output=True, text=True, timeout=60
        )

    exported = tmp_path / "room.csv"
    done = cli("export", "--db", str(db), "--site", "county-store", "--out", str(exported))
    assert done.returncode == 0, done.stderr
    both = cli("mkt", str(exported))
    assert both.returncode == 2 and "choose one with --sensor" in both.stderr
    one = cli("mkt", str(exported), "--sensor", "cr2-ctrl.air")
    assert one.returncode == 0, one.stderr
    expected = mkt_of_series([(T0 + i * 300_000, t) for i, t in enumerate(temps)])
    assert one.stdout.startswith(f"MKT {expected:.2f} °C over {len(temps)} readings")


def test_mkt_command_reads_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "timestamp,temp_c\n2026-11-23T00:00:00Z,2.0\n2026-11-23T00:15:00Z,2.0\n"
        "2026-11-23T00:30:00Z,2.0\n2026-11-23T00:45:00Z,8.0\n"
    )
    assert read_csv(path)[0] == (T0, 2.0)
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "mkt", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("MKT 3.96 °C")
    bad = tmp_path / "bad.csv"
    bad.write_text("time,temp\n1,2\n")
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "mkt", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "missing column" in result.stderr


# --------------------------------------------------------------------------- 2 h / 4 h

H = 3_600_000


@pytest.mark.parametrize(
    ("danger_ms", "expected"),
    [
        (0, Disposition.MAY_RETURN),
        (2 * H - 1, Disposition.MAY_RETURN),
        (2 * H, Disposition.MAY_RETURN),  # exactly 2 h may still go back
        (2 * H + 1, Disposition.USE_NOW),
        (4 * H, Disposition.USE_NOW),  # exactly 4 h is still "use now"
        (4 * H + 1, Disposition.DISCARD),
    ],
)
def test_two_hour_four_hour_rule_boundaries(danger_ms: int, expected: Disposition) -> None:
    assert disposition(danger_ms) is expected


@pytest.mark.parametrize(
    ("temp", "danger"),
    [(4.9, False), (5.0, False), (5.1, True), (30.0, True), (59.9, True), (60.0, False)],
)
def test_danger_zone_is_strictly_between_5_and_60(temp: float, danger: bool) -> None:
    assert in_danger_zone(temp) is danger


def test_danger_time_adds_up_excursions_and_ignores_gaps_and_faults() -> None:
    series: list[tuple[int, float | None]] = [
        (0, 3.0),
        (10 * MIN, 8.0),
        (40 * MIN, 9.0),
        (70 * MIN, 3.0),  # 60 min in danger
        (80 * MIN, 12.0),
        (200 * MIN, 3.0),  # 120 min gap: capped
        (210 * MIN, None),
        (240 * MIN, 3.0),
    ]  # fault: not counted
    assert danger_zone_ms(series, max_gap_ms=30 * MIN) == 60 * MIN + 30 * MIN


@given(steps=st.lists(st.tuples(st.integers(1, 120), st.floats(-5, 70)), min_size=2, max_size=60))
def test_danger_time_never_exceeds_the_span_and_grows_with_heat(steps) -> None:
    t = 0
    series: list[tuple[int, float | None]] = []
    for minutes, temp in steps:
        series.append((t, temp))
        t += minutes * MIN
    total = danger_zone_ms(series, max_gap_ms=30 * MIN)
    assert 0 <= total <= series[-1][0]
    hot = [(ts, 30.0) for ts, _ in series]
    assert danger_zone_ms(hot, 30 * MIN) >= total


# --------------------------------------------------------------------------- profiles


def test_default_profiles_follow_domain_table() -> None:
    profiles = load_profiles()
    frozen = profiles["frozen-meat"]
    assert (frozen.warning.high_c, frozen.warning.delay_min) == (-18.0, 30)
    assert (frozen.critical.high_c, frozen.critical.delay_min) == (-15.0, 15)
    chilled = profiles["chilled-meat"]
    assert chilled.two_hour_rule and chilled.critical.low_c == -2.0
    assert profiles["walnuts-persimmon"].humidity is not None
    assert {p.id for p in profiles.values()} >= {
        "frozen-meat",
        "chilled-meat",
        "fresh-salmon",
        "raspberries",
        "apples",
        "walnuts-persimmon",
        "honey-dried-meat",
    }


def test_a_level_without_limits_is_refused() -> None:
    with pytest.raises(ValueError, match="needs high_c, low_c"):
        LevelLimits()


# --------------------------------------------------------------------------- rules

FROZEN = load_profiles()["frozen-meat"]
FROZEN_LEVELS = {Level.WARNING: FROZEN.warning, Level.CRITICAL: FROZEN.critical}


def series(*segments: tuple[float, float], step_min: float = 5.0, start: int = T0) -> list[Point]:
    """Readings every step_min: (minutes, temp) segments in order."""
    out = []
    t = start
    for minutes, temp in segments:
        for _ in range(round(minutes / step_min)):
            out.append(Point(t, temp))
            t += int(step_min * MIN)
    return out


def kinds(breaches: list[Breach]) -> list[tuple[str, str]]:
    return [(b.kind.value, b.level.value) for b in breaches]


SCENARIOS = [
    # name, readings, expected (kind, level) list
    ("steady frozen room raises nothing", series((240, -20.0)), []),
    (
        "short door-open spike raises nothing",
        series((60, -20.0), (10, -16.0), (5, -14.0), (60, -20.0)),
        [],
    ),
    (
        "long excursion: one warning, then one critical",
        series((60, -20.0), (45, -17.0), (30, -14.0), (60, -20.0)),
        [("high", "warning"), ("high", "critical")],
    ),
    (
        "wobbling just under the limit does not clear (hysteresis)",
        series((30, -20.0), (40, -17.0), (30, -18.2), (20, -17.5), (30, -20.0)),
        [("high", "warning")],
    ),
    (
        "many short excursions: a cumulative breach, no continuous one",
        series(*[(20, -16.5), (60, -20.0)] * 4),
        [("cumulative_high", "warning")],
    ),
]


@pytest.mark.parametrize(("name", "readings", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenario(name: str, readings: list[Point], expected: list[tuple[str, str]]) -> None:
    assert kinds(evaluate("cr1-th.temp", readings, FROZEN_LEVELS)) == expected, name


def test_long_excursion_times_levels_and_clears_with_hysteresis() -> None:
    readings = series((60, -20.0), (45, -17.0), (30, -14.0), (30, -18.2), (10, -18.6), (30, -20.0))
    warning, critical = evaluate("cr1-th.temp", readings, FROZEN_LEVELS)
    t_out = T0 + 60 * MIN
    assert warning.start_ts_ms == t_out
    assert warning.raised_ts_ms == t_out + 30 * MIN  # after its 30 min delay
    # back under -18.5 (limit - deadband) at 165 min and stays 5 min: ends there; the
    # readings at -18.2 were inside the limit but not by the deadband
    assert warning.end_ts_ms == T0 + 165 * MIN
    assert warning.end_reason == "back_in_range"
    assert (warning.min_value, warning.max_value) == (-18.2, -14.0)
    assert critical.start_ts_ms == T0 + 105 * MIN
    assert critical.raised_ts_ms == T0 + 120 * MIN  # 15 min delay
    assert critical.end_ts_ms == T0 + 135 * MIN  # -18.2 <= -15.5 at once
    assert warning.settings["limit_c"] == -18.0 and critical.settings["delay_min"] == 15


def test_silent_sensor_makes_no_data_not_a_never_ending_breach() -> None:
    before = series((60, -20.0), (60, -14.0))
    after = series((60, -20.0), start=before[-1].ts_ms + 180 * MIN)
    breaches = evaluate("cr1-th.temp", before + after, FROZEN_LEVELS)
    assert ("no_data", "warning") in kinds(breaches)
    critical = next(b for b in breaches if b.kind is Kind.HIGH and b.level is Level.CRITICAL)
    assert critical.end_ts_ms == before[-1].ts_ms and critical.end_reason == "no_data"
    assert not any(b.ongoing for b in breaches)


def test_a_silent_sensor_s_breaches_end_at_its_last_reading_on_the_wall_clock() -> None:
    evaluator = SensorEvaluator("cr1-th.temp", FROZEN_LEVELS)
    for point in series((60, -20.0), (60, -14.0)):
        evaluator.feed(point)
    last = evaluator.last_ts_ms
    assert last is not None
    assert evaluator.silence(last + 60 * MIN) == []  # within the no-data time
    ended = evaluator.silence(last + 67 * MIN)
    assert sorted((b.kind.value, b.level.value) for b in ended) == [
        ("high", "critical"),
        ("high", "warning"),
    ]
    assert {(b.end_ts_ms, b.end_reason) for b in ended} == {(last, "no_data")}
    assert evaluator.silence(last + 200 * MIN) == []  # once
    assert not any(b.ongoing for b in evaluator.breaches())
    # the same as evaluating the record once data is back after the gap
    back = series((30, -20.0), start=last + 180 * MIN)
    for point in back:
        evaluator.feed(point)
    again = evaluate("cr1-th.temp", series((60, -20.0), (60, -14.0)) + back, FROZEN_LEVELS)
    assert [(b.identity, b.end_ts_ms) for b in evaluator.breaches()] == [
        (b.identity, b.end_ts_ms) for b in again
    ]


def _excursions(starts_min: list[int], minutes: int, temp: float = -16.5) -> list[Point]:
    """Readings every 5 min at -20 °C from T0 - 12 h for 36 h, out of range (-16.5 °C)
    for ``minutes`` from each start (minutes after T0)."""
    return _runs([(start, minutes) for start in starts_min], temp)


def _runs(runs: list[tuple[int, int]], temp: float = -16.5) -> list[Point]:
    points = []
    for m in range(-12 * 60, 24 * 60, 5):
        out = any(start <= m < start + minutes for start, minutes in runs)
        points.append(Point(T0 + m * MIN, temp if out else -20.0))
    return points


def test_a_cumulative_allowance_is_judged_over_any_24_hours_not_blocks_from_utc_midnight() -> None:
    """Four excursions of 20 min (each shorter than the 30-min delay) within six hours
    around 00:00 UTC (08:00 in China): 80 min out in 24 h against an allowance of 60."""
    readings = _excursions([-180, -90, 30, 120], 20)
    (breach,) = evaluate("cr1-th.temp", readings, FROZEN_LEVELS)
    assert (breach.kind, breach.level) == (Kind.CUMULATIVE_HIGH, Level.WARNING)
    # 20 + 20 + 20 min counted by the third run's end: the allowance passed in the fourth
    assert breach.start_ts_ms == T0 + 120 * MIN
    assert breach.raised_ts_ms == T0 + 140 * MIN  # when the run that passed it ended
    assert breach.settings["window"] == "rolling"
    # it ends when the window's time out of range is back within the allowance
    assert breach.end_reason == "window_end"
    assert breach.end_ts_ms == T0 + (-180 + 24 * 60 + 20) * MIN


def test_the_local_day_window_counts_per_calendar_day_of_the_site() -> None:
    local_day = FROZEN.warning.model_copy(update={"window": "local_day"})
    levels = {Level.WARNING: local_day}
    local_midnight = -8 * 60  # 00:00 in Asia/Shanghai is 16:00 UTC the day before
    before, after = local_midnight - 100, local_midnight + 10
    straddling = _excursions([before, before + 50, after, after + 50], 20)
    assert evaluate("cr1-th.temp", straddling, levels) == []  # 40 min on each day
    same_day = _excursions([after, after + 50, after + 100, after + 150], 20)
    (breach,) = evaluate("cr1-th.temp", same_day, levels)
    assert breach.kind is Kind.CUMULATIVE_HIGH
    assert breach.settings["window_start_ts_ms"] == T0 + local_midnight * MIN


def test_the_minutes_of_an_excursion_that_raised_a_continuous_breach_are_not_counted_again() -> (
    None
):
    """Three excursions of 40 min in a day: each is a continuous warning (30-min delay);
    their 120 minutes, the 30 before each delay included, do not count toward the
    cumulative allowance of 60 min: no cumulative warning at the same minutes."""
    readings = _excursions([0, 180, 360], 40)
    found = evaluate("cr1-th.temp", readings, FROZEN_LEVELS)
    assert kinds(found) == [("high", "warning")] * 3
    # short excursions afterwards count on their own: 20 min each, the fourth passes 60
    longs = [(0, 40), (180, 40), (360, 40)]
    shorts = [(540, 20), (600, 20), (660, 20), (720, 20)]
    found = evaluate("cr1-th.temp", _runs(longs + shorts), FROZEN_LEVELS)
    assert kinds(found) == [("high", "warning")] * 3 + [("cumulative_high", "warning")]
    assert found[-1].start_ts_ms == T0 + 720 * MIN


@pytest.mark.parametrize(
    ("name", "readings", "_expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
@pytest.mark.parametrize("cut", [0.3, 0.5, 0.8])
def test_a_checkpoint_through_json_goes_on_as_if_nothing_had_stopped(
    name: str, readings: list[Point], _expected: object, cut: float
) -> None:
    """Feed part of a history, save the state (as JSON), make a new evaluator that takes
    over the open breaches and the state, feed the rest: the breaches are those of the
    whole history at once."""
    split = int(len(readings) * cut)
    first = SensorEvaluator("cr1-th.temp", FROZEN_LEVELS)
    for point in readings[:split]:
        first.feed(point)
    saved = json.loads(json.dumps(first.checkpoint()))
    second = SensorEvaluator("cr1-th.temp", FROZEN_LEVELS)
    second.resume([b for b in first.breaches() if b.ongoing and b.kind is not Kind.NO_DATA])
    second.restore(saved)
    for point in readings[split:]:
        second.feed(point)
    closed_before = [b for b in first.breaches() if not b.ongoing]
    whole = evaluate("cr1-th.temp", readings, FROZEN_LEVELS)
    found = {b.identity: b for b in closed_before + second.breaches()}
    assert sorted((i, b.end_ts_ms) for i, b in found.items()) == sorted(
        (b.identity, b.end_ts_ms) for b in whole
    ), name


def test_late_backlog_creates_exactly_the_breach_it_should_once() -> None:
    live = series((60, -20.0), start=T0 + 240 * MIN)
    backlog = series((30, -20.0), (60, -14.0), (30, -20.0), start=T0 + 120 * MIN)
    before = evaluate("truck-02-reefer.air", series((120, -20.0)) + live, FROZEN_LEVELS)
    assert [b.kind for b in before] == [Kind.NO_DATA]  # the gap, while the truck was away
    after = evaluate(
        "truck-02-reefer.air",
        sorted(series((120, -20.0)) + backlog + live, key=lambda p: p.ts_ms),
        FROZEN_LEVELS,
    )
    # both levels start at the first reading above -15 °C (it is above -18 °C too)
    assert sorted(kinds(after)) == [("high", "critical"), ("high", "warning")]
    assert {b.start_ts_ms for b in after} == {T0 + 150 * MIN}
    again = evaluate(
        "truck-02-reefer.air",
        sorted(series((120, -20.0)) + backlog + live, key=lambda p: p.ts_ms),
        FROZEN_LEVELS,
    )
    assert [b.identity for b in again] == [b.identity for b in after]


def test_restart_mid_breach_gives_the_same_single_ongoing_breach() -> None:
    readings = series((60, -20.0), (60, -16.0))
    first = evaluate("cr1-th.temp", readings[:20], FROZEN_LEVELS)
    # the service restarts; it evaluates the stored history again, with more readings
    second = evaluate("cr1-th.temp", readings, FROZEN_LEVELS)
    assert [b.identity for b in first] == [b.identity for b in second]
    assert len(second) == 1 and second[0].ongoing


def test_sensor_fault_run_is_its_own_breach_and_not_a_temperature_one() -> None:
    readings = (
        series((30, -20.0))
        + [Point(T0 + (30 + 5 * i) * MIN, None) for i in range(4)]
        + series((30, -20.0), start=T0 + 50 * MIN)
    )
    breaches = evaluate("cr1-th.temp", readings, FROZEN_LEVELS, SeriesSettings(fault_ms=10 * MIN))
    assert kinds(breaches) == [("sensor_fault", "critical")]
    assert breaches[0].start_ts_ms == T0 + 30 * MIN
    assert breaches[0].end_ts_ms == T0 + 50 * MIN


def test_low_limits_work_the_other_way() -> None:
    chilled = load_profiles()["chilled-meat"]
    levels = {Level.WARNING: chilled.warning, Level.CRITICAL: chilled.critical}
    breaches = evaluate("cr2-th.temp", series((30, 2.0), (60, -3.0), (30, 2.0)), levels)
    # both start at the first reading below -2 °C; critical fires first (15 min delay)
    assert kinds(breaches) == [("low", "critical"), ("low", "warning")]


def test_door_open_longer_than_allowed() -> None:
    readings = [(T0 + i * MIN, 5 <= i < 8 or 20 <= i < 40) for i in range(60)]
    breaches = door_open("cr2-th.door", readings, max_open_ms=10 * MIN)
    assert len(breaches) == 1
    assert (breaches[0].start_ts_ms, breaches[0].end_ts_ms) == (T0 + 20 * MIN, T0 + 40 * MIN)


@given(temps=st.lists(st.floats(-25, 0), min_size=1, max_size=200), cut=st.integers(0, 200))
def test_evaluation_is_deterministic_and_order_independent_of_arrival(temps, cut) -> None:
    readings = [Point(T0 + i * 5 * MIN, t) for i, t in enumerate(temps)]
    cut = min(cut, len(readings))
    arrived = readings[cut:] + readings[:cut]  # a backlog arriving after live data
    a = evaluate("s", readings, FROZEN_LEVELS)
    b = evaluate("s", sorted(arrived, key=lambda p: p.ts_ms), FROZEN_LEVELS)
    assert [x.identity for x in a] == [x.identity for x in b]
    for breach in a:
        assert breach.start_ts_ms <= breach.raised_ts_ms
        assert breach.end_ts_ms is None or breach.end_ts_ms >= breach.start_ts_ms
        if breach.kind in (Kind.HIGH, Kind.LOW):
            assert breach.max_value is not None and math.isfinite(breach.max_value)


@given(
    temps=st.lists(st.one_of(st.none(), st.floats(-25, 0)), min_size=1, max_size=150),
    gaps=st.lists(st.integers(1, 120), min_size=150, max_size=150),
)
def test_streaming_changes_are_the_breaches_the_history_has(temps, gaps) -> None:
    from coldchain.judging.rules import SensorEvaluator

    readings, t = [], T0
    for temp, gap in zip(temps, gaps, strict=False):
        readings.append(Point(t, temp))
        t += gap * MIN
    evaluator = SensorEvaluator("s", FROZEN_LEVELS)
    seen = set()
    for p in readings:
        seen |= {b.identity for b in evaluator.feed(p)}
    final = {b.identity for b in evaluate("s", readings, FROZEN_LEVELS)}
    assert seen == final


def test_live_watchdog_opens_a_no_data_breach_that_the_data_later_closes() -> None:
    from coldchain.judging.rules import SensorEvaluator

    evaluator = SensorEvaluator("truck-02-rear.temp", FROZEN_LEVELS)
    for p in series((60, -20.0)):
        evaluator.feed(p)
    last = evaluator.last_ts_ms
    assert last is not None
    assert evaluator.open_no_data(last + 30 * MIN) is None
    opened = evaluator.open_no_data(last + 90 * MIN)
    assert opened is not None and opened.ongoing
    closed = evaluator.feed(Point(last + 120 * MIN, -20.0))
    assert [b.identity for b in closed] == [opened.identity]  # upserted, not duplicated
    assert closed[0].end_ts_ms == last + 120 * MIN


def test_out_of_order_reading_is_refused_by_the_streaming_evaluator() -> None:
    from coldchain.judging.rules import SensorEvaluator

    evaluator = SensorEvaluator("s", FROZEN_LEVELS)
    evaluator.feed(Point(T0 + MIN, -20.0))
    with pytest.raises(ValueError, match="re-evaluate from a checkpoint"):
        evaluator.feed(Point(T0, -20.0))


def test_mkt_weights_follow_time_when_the_interval_changes() -> None:
    """1-minute readings at 2 °C for an hour, then 10-minute readings at 8 °C for an
    hour: each reading stands for the time to the next, the last for the interval before
    it (not the series' median, one minute, which pulled the figure about 0.5 °C low)."""
    cold = [(T0 + m * MIN, 2.0) for m in range(60)]
    warm = [(T0 + 60 * MIN + m * 10 * MIN, 8.0) for m in range(6)]
    found = mkt_report(cold + warm, max_gap_ms=60 * MIN)
    assert found.mkt_c == pytest.approx(mkt_c([2.0, 8.0], [60, 60]), abs=1e-9)
    assert found.mean_c == pytest.approx(5.0)  # time-weighted: an hour each
    assert time_weights([T0, T0 + MIN, T0 + 11 * MIN]) == [MIN, 10 * MIN, 10 * MIN]
    assert found.capped_gaps == ()


def test_a_gap_longer_than_a_few_intervals_is_capped_and_reported() -> None:
    series = [(T0 + m * 5 * MIN, 3.0) for m in range(12)]
    resumed = series[-1][0] + 4 * 60 * MIN  # four hours without data
    series += [(resumed + m * 5 * MIN, 9.0) for m in range(12)]
    found = mkt_report(series)
    assert found.cap_ms == 15 * MIN  # three typical intervals
    assert found.capped_gaps == ((series[11][0], resumed),)
    # the reading before the gap counts for 15 minutes, not four hours
    assert found.mean_c == pytest.approx((3.0 * (55 + 15) + 9.0 * 60) / 130)


def test_the_mkt_command_prints_the_time_weighted_mean_and_the_gaps_in_local_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.csv"
    rows = [f"2026-11-23T00:{m:02d}:00Z,2.0" for m in range(0, 30, 5)]
    rows += [f"2026-11-23T03:{m:02d}:00Z,6.0" for m in range(0, 30, 5)]
    path.write_text("timestamp,temp_c\n" + "\n".join(rows) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "mkt", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # 2 °C stands for 25 min + the 15 min cap, 6 °C for 30 min: (2·40 + 6·30) / 70
    assert "time-weighted mean 3.71 °C" in result.stdout
    assert "2026-11-23 08:25+08:00 to 2026-11-23 11:00+08:00 (155 min)" in result.stdout
