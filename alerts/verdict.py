"""A batch's quality verdict over its whole journey: accept, review or reject, with reasons.

Inputs are the batch's temperature history (the readings of the locations it was in,
while it was there, merged in time order) and the breaches of those locations during
its stay. The numbers: time out of range per level, worst excursion, MKT, and for
chilled products the time between 5 °C and 60 °C with its 2 h / 4 h disposition.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from alerts.disposition import Disposition, danger_zone_ms, disposition
from alerts.mkt import DEFAULT_DH_R_K, MktError, mkt_of_series
from alerts.profiles import ProductProfile
from alerts.wording import Reason, reason_text
from coldchain.judging.breach import Breach, Kind, Level, Point
from coldchain.judging.limits import LevelLimits


class Outcome(enum.StrEnum):
    ACCEPT = "accept"
    REVIEW = "review"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Excursion:
    ts_ms: int
    value_c: float
    beyond_c: float  # how far past the nearest limit of the level


@dataclass
class Verdict:
    outcome: Outcome
    #: the reasons as facts, for each reader's language (alerts/wording.py)
    notes: list[Reason] = field(default_factory=list)
    #: the same in English, the county's time zone (the CLI, the JSON report)
    reasons: list[str] = field(default_factory=list)
    out_of_range_ms: dict[Level, int] = field(default_factory=dict)
    worst: Excursion | None = None
    mkt_c: float | None = None
    danger_ms: int | None = None
    disposition: Disposition | None = None


def _beyond(value: float, limits: LevelLimits) -> float:
    over = value - limits.high_c if limits.high_c is not None else float("-inf")
    under = limits.low_c - value if limits.low_c is not None else float("-inf")
    return max(over, under)


def judge(
    history: Sequence[Point],
    breaches: Sequence[Breach],
    profile: ProductProfile,
    max_gap_ms: int = 30 * 60_000,
    dh_r_k: float = DEFAULT_DH_R_K,
) -> Verdict:
    levels = {Level.WARNING: profile.warning, Level.CRITICAL: profile.critical}
    valid = [p for p in history if p.value is not None]
    verdict = Verdict(Outcome.ACCEPT)
    for level, limits in levels.items():
        total = 0
        for p, nxt in itertools.pairwise(valid):
            assert p.value is not None
            if _beyond(p.value, limits) > 0:
                total += min(nxt.ts_ms - p.ts_ms, max_gap_ms)
        verdict.out_of_range_ms[level] = total
    worst: Excursion | None = None
    for p in valid:
        assert p.value is not None
        beyond = _beyond(p.value, profile.warning)
        if beyond > 0 and (worst is None or beyond > worst.beyond_c):
            worst = Excursion(p.ts_ms, p.value, round(beyond, 3))
    verdict.worst = worst
    if valid:
        try:
            verdict.mkt_c = round(
                mkt_of_series(
                    [(p.ts_ms, float(p.value)) for p in valid if p.value is not None],
                    dh_r_k=dh_r_k,
                    max_gap_ms=max_gap_ms,
                ),
                2,
            )
        except MktError:
            verdict.mkt_c = None
    if profile.two_hour_rule:
        verdict.danger_ms = danger_zone_ms([(p.ts_ms, p.value) for p in history], max_gap_ms)
        verdict.disposition = disposition(verdict.danger_ms)

    reject: list[Reason] = []
    review: list[Reason] = []
    for b in breaches:
        what, grade, start = b.kind.value, b.level.value, b.start_ts_ms
        if b.kind in (Kind.HIGH, Kind.LOW) and b.level is Level.CRITICAL:
            reject.append(
                Reason("critical_excursion", what, grade, start, b.max_value, b.min_value)
            )
        elif b.kind in (Kind.HIGH, Kind.LOW, Kind.CUMULATIVE_HIGH, Kind.CUMULATIVE_LOW):
            review.append(Reason("breach", what, grade, start))
        elif b.kind in (Kind.FAULT, Kind.NO_DATA):
            review.append(Reason("hole", what, grade, start))
    if verdict.disposition is Disposition.DISCARD:
        reject.append(Reason("discard"))
    elif verdict.disposition is Disposition.USE_NOW:
        review.append(Reason("use_now"))
    if (
        verdict.mkt_c is not None
        and profile.keep_high_c is not None
        and verdict.mkt_c > profile.keep_high_c
    ):
        review.append(Reason("mkt_above", mkt_c=verdict.mkt_c, keep_c=profile.keep_high_c))
    if not valid:
        review.append(Reason("no_temperatures"))
    if reject:
        verdict.outcome, verdict.notes = Outcome.REJECT, reject + review
    elif review:
        verdict.outcome, verdict.notes = Outcome.REVIEW, review
    else:
        verdict.notes = [Reason("within")]
    verdict.reasons = [reason_text(r, "en") for r in verdict.notes]
    return verdict
