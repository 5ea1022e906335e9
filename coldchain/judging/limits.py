"""The limits a level (warning, critical) judges by: temperature, and humidity judged by
the same machinery. Product profiles (alerts.profiles) are made of them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from coldchain.settings import Strict


class LevelLimits(Strict):
    """One alarm level (warning or critical) of one product."""

    high_c: float | None = None
    low_c: float | None = None
    #: out of range this long (continuously) before it alarms
    delay_min: Annotated[float, Field(ge=0)] = 15.0
    #: back inside by this much before the alarm may clear (hysteresis)
    deadband_c: Annotated[float, Field(ge=0)] = 0.5
    #: and stay back inside this long
    clear_delay_min: Annotated[float, Field(ge=0)] = 5.0
    #: total time out of range allowed per window (cumulative breach), if any
    cumulative_min: Annotated[float, Field(gt=0)] | None = None
    window_h: Annotated[float, Field(gt=0)] = 24.0
    #: "rolling": any ``window_h`` hours; "local_day": the site's calendar day
    window: Literal["rolling", "local_day"] = "rolling"

    @model_validator(mode="after")
    def _some_limit(self) -> LevelLimits:
        if self.high_c is None and self.low_c is None:
            raise ValueError("a level needs high_c, low_c or both")
        if self.high_c is not None and self.low_c is not None and self.low_c >= self.high_c:
            raise ValueError("low_c must be below high_c")
        return self


class HumidityLimits(Strict):
    high_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    low_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    delay_min: Annotated[float, Field(ge=0)] = 60.0
    deadband_pct: Annotated[float, Field(ge=0)] = 2.0
    clear_delay_min: Annotated[float, Field(ge=0)] = 10.0

    @model_validator(mode="after")
    def _some_limit(self) -> HumidityLimits:
        if self.high_pct is None and self.low_pct is None:
            raise ValueError("humidity needs high_pct, low_pct or both")
        if self.high_pct is not None and self.low_pct is not None and self.low_pct >= self.high_pct:
            raise ValueError("low_pct must be below high_pct")
        return self

    def as_level(self) -> LevelLimits:
        """The same rule machinery judges humidity: limits in % where a level has °C
        (the breach snapshot names the unit)."""
        return LevelLimits(
            high_c=self.high_pct,
            low_c=self.low_pct,
            delay_min=self.delay_min,
            deadband_c=self.deadband_pct,
            clear_delay_min=self.clear_delay_min,
        )


def scaled(limits: LevelLimits, factor: float) -> LevelLimits:
    """Limits with their times divided by ``factor`` (the demo runs its county faster
    than real time; production uses factor 1)."""
    if factor == 1:
        return limits
    update: dict[str, float] = {
        "delay_min": limits.delay_min / factor,
        "clear_delay_min": limits.clear_delay_min / factor,
        "window_h": limits.window_h / factor,
    }
    if limits.cumulative_min is not None:
        update["cumulative_min"] = limits.cumulative_min / factor
    return limits.model_copy(update=update)
