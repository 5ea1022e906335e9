"""Product profiles: the limits a batch is judged by, per level.

Defaults for the seed products live in ``alerts/profiles.toml`` (from DOMAIN.md); they
are engineering defaults the quality team changes, never constants in code.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from coldchain.judging.limits import HumidityLimits, LevelLimits
from coldchain.settings import Strict, load_toml


class ProductProfile(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    name: str
    name_zh: str = ""
    products: tuple[str, ...] = ()
    #: the range to keep the product in (display and verdicts)
    keep_low_c: float | None = None
    keep_high_c: float | None = None
    warning: LevelLimits
    critical: LevelLimits
    humidity: HumidityLimits | None = None
    #: chilled food: apply the 2 h / 4 h rule to time between 5 and 60 °C
    two_hour_rule: bool = False


class ProfileFile(Strict):
    profile: list[ProductProfile]

    @model_validator(mode="after")
    def _unique(self) -> ProfileFile:
        ids = [p.id for p in self.profile]
        if len(ids) != len(set(ids)):
            raise ValueError("profile ids must be unique")
        return self


def load_profiles(path: Path | None = None) -> dict[str, ProductProfile]:
    """Profiles from a TOML file (default: the shipped defaults), by id."""
    if path is None:
        return dict(_default_profiles())
    return {p.id: p for p in load_toml(path, ProfileFile).profile}


@cache
def _default_profiles() -> dict[str, ProductProfile]:
    path = Path(str(resources.files("alerts") / "profiles.toml"))
    return {p.id: p for p in load_toml(path, ProfileFile).profile}
