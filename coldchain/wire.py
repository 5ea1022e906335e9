"""The wire contract between gateways and everything behind the broker.

One module, imported by both ends. It owns the topic layout, the payload structures,
the schema version and the JSON encoding. See docs/wire-contract.md for examples.

Topics (all under ``coldchain/v1/{site}/{gateway}/``):

- ``readings`` (QoS 1): a :class:`ReadingsBatch`, one poll cycle or one backlog chunk.
- ``events``   (QoS 1): an :class:`EventsBatch`: device/sensor state changes, door, outbox.
- ``status``   (QoS 1, retained): a :class:`Status`; the same topic carries the last will.
- ``stored``   (QoS 1, retained), the other way: a :class:`Stored` from the collectors,
  the highest seq of each stream that the store holds with every seq below it; the
  gateway frees a message only when this covers it (docs/design-zero-loss.md).
- ``limits``   (QoS 1, retained), the other way: the alert service's limits for the
  gateway's compartments (coldchain.wire_limits), for the cab's own alarms.

Rules every producer keeps and every consumer may rely on:

- ``seq`` increases by one per message of a stream (readings and events count apart)
  and survives restarts; ``(gateway, epoch, seq)`` identifies a message for ever.
  QoS 1 may deliver a message twice; the pair lets a consumer drop the copy.
- ``held_from`` (optional) is the lowest seq of the stream the gateway still holds when
  it seals the message: every seq below it was confirmed stored or given up (and
  reported by an ``outbox`` event), so a store need not wait for it.
- A reading carries exactly one measurand: one value field whose name carries its unit,
  or a position (``lat_deg`` + ``lon_deg``, optionally ``speed_kmh``, ``course_deg``).
- ``ts_ms`` is the edge time the value was taken, UTC milliseconds since the epoch.
- A value that could not be obtained is ``null`` with ``q = "fault"`` and a ``fault``
  reason; a value outside the sensor's physical range keeps its value with
  ``q = "out_of_range"``. A consumer marks ``q = "clock_suspect"`` a reading stamped
  too far ahead of its own clock (kept, with the time it was received beside it).
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Final, Literal

import msgspec

SCHEMA_VERSION: Final = 1
TOPIC_ROOT: Final = "coldchain/v1"

#: ids used in topics and payloads: lower-case letters, digits, '-', '_' and '.'.
ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_.\-]{0,63}$"
_ID_RE: Final = re.compile(ID_PATTERN)

#: every integer on the wire fits a double exactly: no store, no browser overflows
MAX_INT: Final = 2**53 - 1
#: the most readings or events one message may carry (the gateway's backlog chunk bound)
MAX_ITEMS: Final = 5000
MAX_TEXT: Final = 256
#: the largest payload of any stream: refused unread past it. The gateway cuts its
#: batches to stay under it; the broker's message_size_limit is the same.
MAX_PAYLOAD_BYTES: Final = 1_048_576
#: room for a batch's head (ids, epoch, seq, held_from) within MAX_PAYLOAD_BYTES
BATCH_HEAD_BYTES: Final = 1024

Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
TimestampMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=MAX_INT)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]


class Stream(enum.StrEnum):
    READINGS = "readings"
    EVENTS = "events"
    STATUS = "status"
    STORED = "stored"
    LIMITS = "limits"


class Quality(enum.StrEnum):
    OK = "ok"
    FAULT = "fault"
    OUT_OF_RANGE = "out_of_range"
    #: set by consumers, never sent: stamped by a clock ahead of the receiver's by more
    #: than its tolerance (the value is real, its time is not; see coldchain.accept)
    CLOCK_SUSPECT = "clock_suspect"


class Quantity(enum.StrEnum):
    """Measurands a reading can carry; the value field has the same name."""

    TEMP_C = "temp_c"
    RH_PCT = "rh_pct"
    SETPOINT_C = "setpoint_c"
    DOOR_OPEN = "door_open"
    COMPRESSOR_ON = "compressor_on"
    DEFROST_ON = "defrost_on"
    RUN_H = "run_h"
    #: a refrigerant pressure (suction, discharge), bar gauge
    PRESSURE_BAR = "pressure_bar"
    FAN_ON = "fan_on"
    LIGHT_ON = "light_on"
    #: an auxiliary relay (heater, alarm output, second compressor …)
    AUX_ON = "aux_on"
    #: one alarm of the device itself (a controller's high-temperature alarm, a probe
    #: failure it reports …); which one is told by the sensor's point name
    ALARM_ON = "alarm_on"
    #: a unit-less number a device reports (an operating mode, a fault code)
    STATUS_CODE = "status_code"
    POSITION = "position"  # lat_deg + lon_deg (+ speed_kmh, course_deg)


#: the streams a gateway publishes (``stored`` goes the other way)
GATEWAY_STREAMS: Final = frozenset({Stream.READINGS, Stream.EVENTS, Stream.STATUS})

#: the on/off measurands (relays, alarms, the door): their value is a bool
BOOLEAN_QUANTITIES: Final = frozenset(q for q in Quantity if q.endswith(("_on", "_open")))


class WireError(ValueError):
    """A payload or topic that does not follow this contract. ``kind`` names the rule
    it breaks (a metric label): topic, json, schema, version, measurand, time, empty,
    too_large."""

    def __init__(self, reason: str, kind: str = "schema") -> None:
        self.kind = kind
        super().__init__(reason)


# --------------------------------------------------------------------------- topics


def check_id(kind: str, value: str) -> str:
    if not _ID_RE.match(value):
        raise WireError(f"{kind} {value!r} does not match {ID_PATTERN}", "topic")
    return value


def topic(site: str, gateway: str, stream: Stream) -> str:
    return f"{TOPIC_ROOT}/{check_id('site', site)}/{check_id('gateway', gateway)}/{stream}"


def subscription(stream: Stream, site: str = "+", gateway: str = "+") -> str:
    """A topic filter for one stream of all (or some) gateways."""
    return f"{TOPIC_ROOT}/{site}/{gateway}/{stream}"


class TopicParts(msgspec.Struct, frozen=True):
    site: str
    gateway: str
    stream: Stream


def parse_topic(name: str) -> TopicParts:
    parts = name.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise WireError(
            f"topic {name!r} is not {TOPIC_ROOT}/{{site}}/{{gateway}}/{{stream}}", "topic"
        )
    try:
        stream = Stream(parts[4])
    except ValueError:
        raise WireError(f"topic {name!r}: unknown stream {parts[4]!r}", "topic") from None
    return TopicParts(check_id("site", parts[2]), check_id("gateway", parts[3]), stream)


# --------------------------------------------------------------------------- payloads


class Reading(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One value of one sensor at one edge time."""

    sensor: Id
    ts_ms: TimestampMs
    q: Quality
    fault: Text | None = None
    temp_c: float | None = None
    rh_pct: float | None = None
    setpoint_c: float | None = None
    door_open: bool | None = None
    compressor_on: bool | None = None
    defrost_on: bool | None = None
    run_h: float | None = None
    pressure_bar: float | None = None
    fan_on: bool | None = None
    light_on: bool | None = None
    aux_on: bool | None = None
    alarm_on: bool | None = None
    status_code: float | None = None
    # a position past ±90°/±180° is kept, marked out_of_range (coldchain.accept)
    lat_deg: float | None = None
    lon_deg: float | None = None
    speed_kmh: float | None = None
    course_deg: float | None = None
    # a position's fix quality, from the receiver's GGA: satellites used, HDOP
    sats: Annotated[int, msgspec.Meta(ge=0, le=255)] | None = None
    hdop: float | None = None
    # Which measurand this reading carries when its value is null (fault readings).
    quantity: Quantity | None = None

    def measurand(self) -> Quantity:
        """The quantity carried; raises WireError unless exactly one is present."""
        return self.measure()[0]

    def value(self) -> float | bool | None:
        """The scalar value (None for a fault or a position)."""
        return self.measure()[1]

    def measure(self) -> tuple[Quantity, float | bool | None]:
        """(quantity, scalar value) in one pass; WireError unless exactly one measurand is
        present. Field by field: the collector calls it for every reading it stores."""
        found: list[tuple[Quantity, float | bool | None]] = []
        if self.temp_c is not None:
            found.append((Quantity.TEMP_C, self.temp_c))
        if self.rh_pct is not None:
            found.append((Quantity.RH_PCT, self.rh_pct))
        if self.setpoint_c is not None:
            found.append((Quantity.SETPOINT_C, self.setpoint_c))
        if self.door_open is not None:
            found.append((Quantity.DOOR_OPEN, self.door_open))
        if self.compressor_on is not None:
            found.append((Quantity.COMPRESSOR_ON, self.compressor_on))
        if self.defrost_on is not None:
            found.append((Quantity.DEFROST_ON, self.defrost_on))
        if self.run_h is not None:
            found.append((Quantity.RUN_H, self.run_h))
        if self.pressure_bar is not None:
            found.append((Quantity.PRESSURE_BAR, self.pressure_bar))
        if self.fan_on is not None:
            found.append((Quantity.FAN_ON, self.fan_on))
        if self.light_on is not None:
            found.append((Quantity.LIGHT_ON, self.light_on))
        if self.aux_on is not None:
            found.append((Quantity.AUX_ON, self.aux_on))
        if self.alarm_on is not None:
            found.append((Quantity.ALARM_ON, self.alarm_on))
        if self.status_code is not None:
            found.append((Quantity.STATUS_CODE, self.status_code))
        if self.lat_deg is not None or self.lon_deg is not None:
            if self.lat_deg is None or self.lon_deg is None:
                raise WireError(
                    f"reading of {self.sensor}: position needs lat_deg and lon_deg", "measurand"
                )
            found.append((Quantity.POSITION, None))
        if len(found) == 1:
            if self.quantity is not None and self.quantity is not found[0][0]:
                raise WireError(
                    f"reading of {self.sensor}: quantity contradicts its value", "measurand"
                )
            return found[0]
        if found:
            names = [q.value for q, _ in found]
            raise WireError(
                f"reading of {self.sensor} carries {names}; one measurand only", "measurand"
            )
        if self.q is Quality.FAULT and self.quantity is not None:
            return self.quantity, None
        raise WireError(f"reading of {self.sensor} has no value and is not a fault", "measurand")


class ReadingsBatch(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    v: int
    gateway: Id
    site: Id
    epoch: TimestampMs
    seq: Seq
    readings: Annotated[list[Reading], msgspec.Meta(max_length=MAX_ITEMS)]
    held_from: Seq | None = None


class Event(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A change of state seen at the edge.

    kind/state pairs: ``device`` ok|no_response|exception|garbled|stale,
    ``sensor`` ok|fault|out_of_range, ``door`` open|closed, ``outbox`` overflow,
    ``gateway`` started|stopping, ``gps`` fix|no_fix, ``clock`` off|ok (against a
    reference) and stepped_back, ``alarm`` on|off (a device's own alarm, ``detail``
    names it: high_temp, low_temp, probe_failure …).
    """

    ts_ms: TimestampMs
    kind: Literal["device", "sensor", "door", "outbox", "gateway", "gps", "clock", "alarm"]
    source: Id
    state: Annotated[str, msgspec.Meta(max_length=32)]
    detail: Text | None = None
    count: Count | None = None


class EventsBatch(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    v: int
    gateway: Id
    site: Id
    epoch: TimestampMs
    seq: Seq
    events: Annotated[list[Event], msgspec.Meta(max_length=MAX_ITEMS)]
    held_from: Seq | None = None


class Status(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Retained gateway presence. ``reason`` is ``lwt`` when the broker sent the will."""

    v: int
    gateway: Id
    site: Id
    state: Literal["online", "offline"]
    ts_ms: TimestampMs
    reason: Text | None = None
    version: Text | None = None
    #: counters of the gateway since it started (heartbeat), e.g. readings_taken, backlog
    stats: Annotated[dict[Id, Count], msgspec.Meta(max_length=64)] | None = None


class Stored(msgspec.Struct, omit_defaults=True):
    """What the store holds of one gateway's outbox epoch, published by the collectors
    after each commit: per stream, the highest seq stored with every seq below it
    (``None``: nothing of that stream yet). ``ts_ms`` is the collector's clock when it
    was sent, a time reference for the gateway. Unknown fields are ignored, not refused:
    collectors are upgraded before gateways and may add some."""

    v: int
    gateway: Id
    site: Id
    epoch: TimestampMs
    ts_ms: TimestampMs
    readings: Count | None = None
    events: Count | None = None


Message = ReadingsBatch | EventsBatch | Status

_encoder: Final = msgspec.json.Encoder()
_decoders: Final[dict[Stream, msgspec.json.Decoder[Any]]] = {
    Stream.READINGS: msgspec.json.Decoder(ReadingsBatch),
    Stream.EVENTS: msgspec.json.Decoder(EventsBatch),
    Stream.STATUS: msgspec.json.Decoder(Status),
}
_stored_decoder: Final = msgspec.json.Decoder(Stored)
_reading_decoder: Final = msgspec.json.Decoder(Reading)
_event_decoder: Final = msgspec.json.Decoder(Event)


def encode(obj: Message | Stored | Reading | Event) -> bytes:
    return _encoder.encode(obj)


def decode(stream: Stream, payload: bytes, *, check_measurands: bool = True) -> Message:
    """Decode and validate a payload of a stream (a readings batch of either schema
    version, coldchain.wire_batch); raises WireError with the reason.

    ``check_measurands=False`` leaves the one-measurand-per-reading check to a caller that
    measures every reading anyway (the collector), so that it is done once."""
    if stream is Stream.READINGS and payload[:1] == b"\x78":  # version 2 (which imports wire)
        from coldchain.wire_batch import expand

        return expand(payload)
    msg: Message = _decoded(_decoders[stream], stream, payload)
    if check_measurands and isinstance(msg, ReadingsBatch):
        for reading in msg.readings:
            reading.measurand()
    return msg


def decode_stored(payload: bytes) -> Stored:
    """Decode a stored watermark; raises WireError with the reason."""
    stored: Stored = _decoded(_stored_decoder, Stream.STORED, payload)
    return stored


def _decoded(decoder: msgspec.json.Decoder[Any], stream: Stream, payload: bytes) -> Any:
    """msgspec's errors translated into the contract's, and the version checked."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError(
            f"{len(payload)} bytes, more than the {MAX_PAYLOAD_BYTES} a message may have",
            "too_large",
        )
    try:
        msg = decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raise WireError(f"does not follow the {stream} schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise WireError(f"not valid JSON: {exc}", "json") from None
    if msg.v != SCHEMA_VERSION:
        raise WireError(f"schema version {msg.v} is not {SCHEMA_VERSION}", "version")
    return msg


def decode_reading(body: bytes) -> Reading:
    return _reading_decoder.decode(body)


def decode_event(body: bytes) -> Event:
    return _event_decoder.decode(body)
