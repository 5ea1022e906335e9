"""The limits message: from the alert service down to a gateway (docs/wire-contract.md).

Retained on ``coldchain/v1/{site}/{gateway}/limits``, QoS 1. For each of the gateway's
sensors assigned to a room or compartment with a product profile, the levels it is
judged by (as :class:`~coldchain.judging.limits.LevelLimits`, times already scaled for a
demo's clock), the calibration correction in force and the door allowance. A truck's
gateway keeps the latest on disk and judges its compartments by them with the alert
service's own rules, so that the driver sees a breach in the cab with no signal
(gateway/cab_alarms.py); the alert service stays the record.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from coldchain.wire import MAX_ITEMS, Id, Text, TimestampMs, WireError

LIMITS_VERSION: Final = 1


class SensorLimits(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    sensor: Id
    #: where it measures, as the driver calls it, and the product profile in force
    location: Text
    profile: Text
    #: LevelLimits fields (high_c, low_c, delay_min, deadband_c, clear_delay_min …)
    warning: dict[str, Any]
    critical: dict[str, Any]
    location_zh: Text = ""
    #: added to a raw temperature (the calibration in force)
    correction_c: float = 0.0
    #: a door open longer than this is a breach (for a door contact)
    door_max_min: float | None = None


class Limits(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    v: int
    gateway: Id
    site: Id
    ts_ms: TimestampMs
    sensors: Annotated[list[SensorLimits], msgspec.Meta(max_length=MAX_ITEMS)]
    #: readings further apart than this are a gap; faults this long are a sensor fault
    max_gap_ms: int
    fault_ms: int


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Limits)


def encode_limits(limits: Limits) -> bytes:
    return _encoder.encode(limits)


def decode_limits(payload: bytes) -> Limits:
    """A limits message; WireError with the reason."""
    try:
        limits = _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise WireError(f"does not follow the limits schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise WireError(f"not valid JSON: {exc}", "json") from None
    if limits.v != LIMITS_VERSION:
        raise WireError(f"limits version {limits.v} is not {LIMITS_VERSION}", "version")
    return limits
