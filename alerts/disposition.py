"""The 2-hour / 4-hour rule for chilled food out of refrigeration.

All time the food spent between 5 °C and 60 °C is added up:

- up to 2 h (2 h exactly included): it may be used, sold or put back under refrigeration;
- more than 2 h and up to 4 h (4 h exactly included): use or sell it now, do not put
  it back;
- more than 4 h: discard.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence

DANGER_LOW_C = 5.0
DANGER_HIGH_C = 60.0
TWO_HOURS_MS = 2 * 3_600_000
FOUR_HOURS_MS = 4 * 3_600_000


class Disposition(enum.StrEnum):
    MAY_RETURN = "may_return_to_refrigeration"
    USE_NOW = "use_or_sell_now"
    DISCARD = "discard"


def disposition(danger_ms: int) -> Disposition:
    if danger_ms <= TWO_HOURS_MS:
        return Disposition.MAY_RETURN
    if danger_ms <= FOUR_HOURS_MS:
        return Disposition.USE_NOW
    return Disposition.DISCARD


def in_danger_zone(temp_c: float) -> bool:
    """Between 5 °C and 60 °C. At exactly 5 °C the food is still cold-held (FDA Food
    Code: 5 °C or less); at exactly 60 °C it is hot-held."""
    return DANGER_LOW_C < temp_c < DANGER_HIGH_C


def danger_zone_ms(series: Sequence[tuple[int, float | None]], max_gap_ms: int) -> int:
    """Time in the danger zone: each reading stands for the time to the next one (at
    most ``max_gap_ms``: a gap is not counted); the last reading stands for nothing
    more. A reading without a value (sensor fault) counts as unknown, not as safe and not
    as danger: it is excluded (a verdict flags faults separately)."""
    total = 0
    for (t, value), (t_next, _) in itertools.pairwise(series):
        if value is not None and in_danger_zone(value):
            total += min(t_next - t, max_gap_ms)
    return total
