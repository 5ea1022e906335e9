"""What the rules judge and what they find: points in, breaches out, their kinds, levels
and why each ended. Shared by every evaluator, the service, the store and the reports."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

MINUTE_MS = 60_000


class Kind(enum.StrEnum):
    HIGH = "high"
    LOW = "low"
    CUMULATIVE_HIGH = "cumulative_high"
    CUMULATIVE_LOW = "cumulative_low"
    FAULT = "sensor_fault"
    NO_DATA = "no_data"
    DOOR_OPEN = "door_open"
    RH_HIGH = "rh_high"
    RH_LOW = "rh_low"
    GATEWAY_OFFLINE = "gateway_offline"
    #: the gateway's clock is off: its readings' times are not to be trusted
    GATEWAY_CLOCK = "gateway_clock"
    #: the device's own alarm is on (a controller's high-temperature alarm, a probe
    #: failure it reports): evidence beside our own judgement, for as long as it is on
    DEVICE_ALARM = "device_alarm"


class Level(enum.StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class EndReason(enum.StrEnum):
    """Why a breach ended; stored in ``breaches.end_reason``."""

    #: back inside the limit by the deadband for the clear delay
    BACK_IN_RANGE = "back_in_range"
    #: the sensor fell silent: the breach ends at its last reading
    NO_DATA = "no_data"
    #: the time out of range in the cumulative window is back within the allowance
    WINDOW_END = "window_end"
    #: a no-data breach ends when the sensor's data is back
    DATA_BACK = "data_back"
    #: the door was closed
    CLOSED = "closed"
    #: the profile or limits changed: the new ones apply from then on
    SETTINGS_CHANGED = "settings_changed"
    #: the gateway is back online
    BACK_ONLINE = "back_online"
    #: the gateway's clock is right again
    CLOCK_RIGHT = "clock_right"
    #: late data showed it did not happen as judged (kept, never deleted)
    SUPERSEDED = "superseded"


@dataclass(frozen=True, slots=True)
class Point:
    """One reading of a temperature (or humidity) sensor; value None = fault."""

    ts_ms: int
    value: float | None


@dataclass(slots=True)
class Breach:
    sensor: str
    kind: Kind
    level: Level
    start_ts_ms: int
    #: edge time at which the rule fired (the delay had elapsed)
    raised_ts_ms: int
    end_ts_ms: int | None = None
    #: why it ended; None while ongoing
    end_reason: EndReason | None = None
    min_value: float | None = None
    max_value: float | None = None
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, str, str, int]:
        return (self.sensor, self.kind.value, self.level.value, self.start_ts_ms)

    @property
    def ongoing(self) -> bool:
        return self.end_ts_ms is None


@dataclass(frozen=True, slots=True)
class SeriesSettings:
    #: readings further apart than this are a gap: no run continues across it
    max_gap_ms: int = 30 * MINUTE_MS
    #: a gap this long is a no-data breach
    no_data_ms: int = 66 * MINUTE_MS
    #: fault readings for this long are a sensor-fault breach
    fault_ms: int = 10 * MINUTE_MS
    #: the site's time zone (a profile's cumulative allowance per local day)
    tz: str = "Asia/Shanghai"


#: the defaults, as one shared value (an argument default must not be a call)
DEFAULT_SERIES = SeriesSettings()

Direction = Literal["high", "low"]


@dataclass(frozen=True, slots=True)
class Measure:
    """What a series measures: the breach kinds of its limits, the unit of the limits in
    the snapshot, and whether faults and gaps are judged on it (a transmitter's humidity
    channel goes silent with its temperature channel: one no-data breach is enough)."""

    high: Kind
    low: Kind
    unit: str
    judge_health: bool


TEMPERATURE = Measure(Kind.HIGH, Kind.LOW, "c", judge_health=True)
HUMIDITY = Measure(Kind.RH_HIGH, Kind.RH_LOW, "pct", judge_health=False)


def widen(breach: Breach, value: float) -> bool:
    """Take a value into the breach's min and max; True if either moved."""
    low = value if breach.min_value is None else min(breach.min_value, value)
    high = value if breach.max_value is None else max(breach.max_value, value)
    moved = (low, high) != (breach.min_value, breach.max_value)
    breach.min_value, breach.max_value = low, high
    return moved


def is_out(value: float, limit: float, direction: Direction) -> bool:
    return value > limit if direction == "high" else value < limit
