"""Alarm lifecycle, escalation with a controllable clock, and batch verdicts."""

from __future__ import annotations

from datetime import time

import pytest

from alerts.disposition import Disposition
from alerts.lifecycle import (
    Alarm,
    LifecycleError,
    Policy,
    State,
    Step,
    acknowledge,
    clear,
    due_notifications,
)
from alerts.profiles import load_profiles
from alerts.verdict import Outcome, judge
from alerts.wording import disposition_text, local_time, reason_text
from coldchain.judging.breach import Level, Point
from coldchain.judging.rules import evaluate

MIN = 60_000
T0 = 1_795_392_000_000  # 2026-11-23T00:00Z = 08:00 in China
POLICY = Policy(
    steps=(Step(0, ("room-operator",)), Step(15, ("shift-lead",)), Step(30, ("quality-manager",))),
    repeat_min=30,
)


def test_acknowledge_needs_a_named_user_and_a_comment() -> None:
    alarm = Alarm("a1", Level.CRITICAL, T0)
    with pytest.raises(LifecycleError, match="needs a comment"):
        acknowledge(alarm, "li.wei", "   ", T0 + MIN)
    with pytest.raises(LifecycleError, match="named user"):
        acknowledge(alarm, "", "door closed", T0 + MIN)
    assert alarm.state is State.ACTIVE and not alarm.acknowledged
    acknowledge(alarm, "li.wei", "door of cold room 2 closed, product checked", T0 + MIN)
    assert alarm.state is State.ACKNOWLEDGED
    with pytest.raises(LifecycleError, match=r"already acknowledged by li\.wei"):
        acknowledge(alarm, "wang.fang", "me too", T0 + 2 * MIN)


@pytest.mark.parametrize("order", ["ack_then_clear", "clear_then_ack"])
def test_alarm_closes_once_acknowledged_and_cleared_in_either_order(order: str) -> None:
    alarm = Alarm("a1", Level.WARNING, T0)
    if order == "ack_then_clear":
        acknowledge(alarm, "li.wei", "on it", T0 + MIN)
        assert alarm.state is State.ACKNOWLEDGED
        clear(alarm, T0 + 10 * MIN)
    else:
        clear(alarm, T0 + 10 * MIN)
        assert alarm.state is State.CLEARED  # still needs a person to look at it
        acknowledge(alarm, "li.wei", "checked the log", T0 + 20 * MIN)
    assert alarm.state is State.CLOSED and alarm.closed_ms is not None


def sent_over(
    alarm: Alarm, policy: Policy, minutes: range, ack_at: int | None = None
) -> list[tuple[int, str]]:
    """Run the escalation clock minute by minute; returns (minute, key) sent."""
    sent: set[str] = set()
    log = []
    for minute in minutes:
        now = alarm.raised_ms + minute * MIN
        if ack_at is not None and minute == ack_at:
            acknowledge(alarm, "li.wei", "handled", now)
        for n in due_notifications(alarm, policy, now, sent):
            sent.add(n.key)
            log.append((minute, n.key.split("/")[1]))
    return log


def test_escalation_fires_on_time_and_repeats_until_acknowledged() -> None:
    log = sent_over(Alarm("a1", Level.CRITICAL, T0), POLICY, range(0, 121))
    assert log == [
        (0, "step0"),
        (15, "step1"),
        (30, "step2"),
        (60, "repeat1"),
        (90, "repeat2"),
        (120, "repeat3"),
    ]


def test_acknowledging_stops_escalation() -> None:
    log = sent_over(Alarm("a1", Level.CRITICAL, T0), POLICY, range(0, 121), ack_at=20)
    assert log == [(0, "step0"), (15, "step1")]


def test_quiet_hours_hold_warnings_but_never_critical_alarms() -> None:
    night = T0 + 15 * 60 * MIN  # 23:00 China time
    quiet = Policy(
        steps=POLICY.steps, repeat_min=None, quiet_start=time(22, 0), quiet_end=time(6, 0)
    )
    assert quiet.quiet(night) and not quiet.quiet(T0)
    warning = sent_over(Alarm("w", Level.WARNING, night), quiet, range(0, 40))
    critical = sent_over(Alarm("c", Level.CRITICAL, night), quiet, range(0, 40))
    assert warning == []
    assert [k for _, k in critical] == ["step0", "step1", "step2"]


def test_a_restarted_service_sends_each_due_notification_once() -> None:
    alarm = Alarm("a1", Level.CRITICAL, T0)
    sent = {"a1/step0"}  # what the durable outbox had sent before the restart
    due = due_notifications(alarm, POLICY, T0 + 95 * MIN, sent)
    assert [n.key for n in due] == ["a1/step1", "a1/step2", "a1/repeat2"]
    sent |= {n.key for n in due}
    assert due_notifications(alarm, POLICY, T0 + 96 * MIN, sent) == []


# --------------------------------------------------------------------------- verdicts

PROFILES = load_profiles()


def history(*segments: tuple[float, float | None], start: int = T0) -> list[Point]:
    out, t = [], start
    for minutes, temp in segments:
        for _ in range(round(minutes / 5)):
            out.append(Point(t, temp))
            t += 5 * MIN
    return out


def verdict_of(profile_id: str, points: list[Point]):  # type: ignore[no-untyped-def]
    profile = PROFILES[profile_id]
    levels = {Level.WARNING: profile.warning, Level.CRITICAL: profile.critical}
    return judge(points, evaluate("s", points, levels), profile)


def test_journey_within_limits_is_accepted() -> None:
    v = verdict_of("frozen-meat", history((600, -20.0)))
    assert v.outcome is Outcome.ACCEPT
    assert v.mkt_c == -20.0
    assert v.out_of_range_ms[Level.WARNING] == 0 and v.worst is None


def test_warning_excursion_means_review_with_its_numbers() -> None:
    v = verdict_of("frozen-meat", history((120, -20.0), (45, -17.0), (120, -20.0)))
    assert v.outcome is Outcome.REVIEW
    assert any("warning high" in r for r in v.reasons)
    assert v.out_of_range_ms[Level.WARNING] == 45 * MIN
    assert v.worst is not None and v.worst.value_c == -17.0 and v.worst.beyond_c == 1.0


def test_critical_excursion_means_reject() -> None:
    v = verdict_of("frozen-meat", history((120, -20.0), (60, -12.0), (120, -20.0)))
    assert v.outcome is Outcome.REJECT
    assert v.reasons[0].startswith("critical high excursion")


@pytest.mark.parametrize(
    ("hours_warm", "disposition", "outcome"),
    [
        (1.0, Disposition.MAY_RETURN, Outcome.REJECT),  # 12 °C is past the critical 7 °C
        (3.0, Disposition.USE_NOW, Outcome.REJECT),
        (5.0, Disposition.DISCARD, Outcome.REJECT),
    ],
)
def test_chilled_meat_gets_its_two_hour_four_hour_disposition(
    hours_warm: float, disposition: Disposition, outcome: Outcome
) -> None:
    v = verdict_of("chilled-meat", history((60, 2.0), (hours_warm * 60, 12.0), (60, 2.0)))
    assert v.danger_ms == int(hours_warm * 3_600_000)
    assert v.disposition is disposition
    assert v.outcome is outcome


def test_two_hours_between_5_and_7_degrees_is_use_now_and_review() -> None:
    v = verdict_of("chilled-meat", history((60, 2.0), (180, 6.0), (60, 2.0)))
    assert v.disposition is Disposition.USE_NOW
    assert v.outcome is Outcome.REVIEW
    assert any("use or sell now" in r for r in v.reasons)


def test_a_hole_in_the_record_is_never_silently_accepted() -> None:
    v = verdict_of("frozen-meat", history((60, -20.0)) + history((60, -20.0), start=T0 + 300 * MIN))
    assert v.outcome is Outcome.REVIEW
    assert any("no data" in r and "the record has a hole" in r for r in v.reasons)


def test_a_verdict_reads_in_chinese_and_english_with_the_county_s_date_and_time() -> None:
    v = verdict_of("frozen-meat", history((120, -20.0), (60, -12.0), (120, -20.0)))
    critical = v.notes[0]
    zh, en = reason_text(critical, "zh"), reason_text(critical, "en")
    start = local_time(critical.ts_ms or 0)
    assert zh.startswith(f"{start}起严重温度过高超限（最高 -12.0 °C")
    assert en.startswith(f"critical high excursion from {start} (max -12.0 °C")
    assert "(UTC+08:00)" in start and v.reasons[0] == en
    chilled = verdict_of("chilled-meat", history((60, 2.0), (180, 6.0), (60, 2.0)))
    assert chilled.disposition is not None
    assert disposition_text(chilled.disposition.value, "zh") == "须立即使用或出售，不得再冷藏"
    assert "use_or_sell_now" not in " ".join(reason_text(n, "en") for n in chilled.notes)
