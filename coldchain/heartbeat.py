"""Service heartbeats: how the collectors and the alert service say they are alive and
making progress, for the watchdog on the watchers (``coldchain watchdog``) and the API's
``/api/health``.

Each service publishes its :class:`~coldchain.health.Health` on
``coldchain/services/{kind}/{id}`` (QoS 1, retained) every few seconds, with counters
that show progress; its last will says ``dead``; a clean stop says ``stopped``.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from coldchain.wire import Count, Id, Text, TimestampMs

SERVICES_ROOT: Final = "coldchain/services"
BEAT_VERSION: Final = 1

BeatState = Literal["ok", "degraded", "stalled", "dead", "stopped"]


class ServiceBeat(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    v: int
    kind: Id
    service: Id
    state: BeatState
    ts_ms: TimestampMs
    reasons: Annotated[list[Text], msgspec.Meta(max_length=32)] = []
    #: counters that move while the service makes progress (messages handled, …)
    progress: Annotated[dict[Id, Count], msgspec.Meta(max_length=32)] = {}


def beat_topic(kind: str, service: str) -> str:
    return f"{SERVICES_ROOT}/{kind}/{service}"


def subscription() -> str:
    return f"{SERVICES_ROOT}/+/+"


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(ServiceBeat)


def encode_beat(beat: ServiceBeat) -> bytes:
    return _encoder.encode(beat)


def decode_beat(payload: bytes) -> ServiceBeat:
    """Raises msgspec.DecodeError / ValidationError on a malformed beat."""
    return _decoder.decode(payload)
