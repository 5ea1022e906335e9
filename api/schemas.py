"""What the API answers and accepts (pydantic v2). Times are UTC milliseconds, like
everywhere in coldchain; temperatures in °C, humidity in %."""

from __future__ import annotations

import json
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerts.passwords import MIN_LENGTH
from alerts.repo.users import USERNAME_PATTERN, Role

Username = Annotated[str, Field(pattern=USERNAME_PATTERN)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
#: a site's, location's, gateway's, profile's or batch's id, as the county file has them
SiteId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)]
#: a line of text as people type it: no control characters (PostgreSQL refuses NUL)
Line = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]+$")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FromRow(Model):
    """A response read from an ORM row's attributes (``Model.model_validate(row)``)."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)


M = TypeVar("M", bound=BaseModel)


def from_row(model: type[M], row: object, **extra: object) -> M:
    """A response built from a row's attributes, with the fields the row lacks given."""
    fields = {name: getattr(row, name) for name in model.model_fields if name not in extra}
    return model.model_validate({**fields, **extra})


class Login(Model):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=200)]


class SessionOut(Model):
    token: str
    username: str
    role: Role
    display_name: str
    expires_ms: int
    #: signed in with a one-time password: nothing else until they choose their own
    must_change_password: bool = False


class Me(Model):
    username: str
    role: Role
    display_name: str
    must_change_password: bool = False


class PasswordChange(Model):
    current_password: Annotated[str, Field(min_length=1, max_length=200)]
    new_password: Annotated[str, Field(min_length=MIN_LENGTH, max_length=200)]


class Latest(Model):
    gateway: str
    sensor: str
    quantity: str
    value: float | bool | None
    q: str
    ts_ms: int
    age_s: float
    #: a temperature as measured, before the calibration correction in ``value``
    raw_value: float | bool | None = None
    correction_c: float = 0.0


class LocationOut(Model):
    id: str
    name: str
    name_zh: str | None = None
    kind: str
    profile_id: str | None
    keep_low_c: float | None
    keep_high_c: float | None
    door_open_max_min: float
    #: latest readings of its assigned sensors (from the live hub)
    readings: list[Latest]
    #: its air and product temperature sensors with no reading in the hub yet,
    #: "gateway/sensor" (the board keeps a place for the first one to come)
    waiting_sensors: list[str] = []
    open_alarms: int
    state: Literal["ok", "alarm", "stale", "no_data"]


class SiteOut(Model):
    id: str
    name: str
    name_zh: str | None = None
    kind: str
    county: str | None
    locations: list[LocationOut]
    gateways: dict[str, str]  # gateway id: online | offline | back-filling | unconfirmed | unknown


class ReadingOut(Model):
    gateway: str
    sensor: str
    ts_ms: int
    quantity: str
    value: float | bool | None
    q: str
    fault: str | None = None


class AlarmOut(Model):
    id: int
    state: str
    level: str
    kind: str
    raised_ms: int
    start_ms: int
    end_ms: int | None
    gateway: str
    sensor: str
    location_id: str | None
    location_name: str | None
    location_name_zh: str | None = None
    site_id: str | None
    batches: list[str]
    min_value: float | None
    max_value: float | None
    acknowledged_by: str | None
    ack_comment: str | None
    acknowledged_ms: int | None
    assigned_to: str | None
    settings: dict[str, object]


class Acknowledge(Model):
    comment: Text


class Assign(Model):
    assignee: Username | None


class StayOut(Model):
    location_id: str
    location_name: str
    from_ms: int
    until_ms: int | None
    event: str
    handed_over_by: str
    temp_at_handover_c: float | None


class BatchOut(Model):
    id: str
    product: str
    quantity: float
    unit: str
    profile_id: str
    origin_producer: str
    origin_village: str | None
    origin_county: str | None
    trace_code: str
    created_ms: int
    lot: str | None = None
    split_from: str | None = None
    location_id: str | None  # where it is now (None: delivered)
    journey: list[StayOut]


Name = Annotated[Line, Field(max_length=200)]


class Receive(Model):
    """A batch received into a room: what it is, where from, how much."""

    id: SiteId
    product: Name
    profile_id: SiteId
    quantity: Annotated[float, Field(gt=0, le=1e9)]
    unit: Annotated[Line, Field(max_length=16)] = "kg"
    origin_producer: Name  # the cooperative or household
    origin_village: Name | None = None
    origin_county: Name | None = None
    lot: Annotated[Line, Field(max_length=64)] | None = None
    into_location: SiteId
    temp_c: Annotated[float, Field(ge=-60, le=80)] | None = None


class Scanned(Model):
    #: what the QR code says (a batch's label: its public trace address)
    text: str


class ImportOut(Model):
    added: list[str]
    #: already in the database as the sheet says: left as they are
    unchanged: list[str]
    dry_run: bool


class Split(Model):
    new_id: SiteId
    quantity: Annotated[float, Field(gt=0, le=1e9)]


class Handover(Model):
    to_location: SiteId | None
    event: Literal["loaded", "unloaded", "transferred", "into_store", "delivered"]
    temp_c: Annotated[float, Field(ge=-60, le=80)] | None = None
    #: on a delivery: who took it (recorded in the audit trail with the move)
    receiver: Annotated[Line, Field(max_length=200)] | None = None


class ProfileChange(Model):
    profile: dict[str, object]
    reason: Text
    #: in force from then (epoch ms, later than now); default: now
    from_ms: Annotated[int, Field(ge=0)] | None = None


class OneTimePassword(Model):
    username: str
    password: str  # shown once: give it to the user, who signs in with it


class UserOut(FromRow):
    username: str
    display_name: str
    role: Role
    active: bool
    sites: list[str]  # empty: every site
    truck: str | None

    @field_validator("sites", mode="before")
    @classmethod
    def _stored_sites(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value


class NewUserOut(UserOut):
    #: the one-time password the API made (when the body gave none): shown only here
    password: str | None


class NewUser(Model):
    username: Username
    #: left out: the API makes a one-time password and shows it once in its answer
    password: Annotated[str, Field(min_length=MIN_LENGTH, max_length=200)] | None = None
    role: Role
    display_name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    #: the sites they may see and act on; empty: every site
    sites: Annotated[list[SiteId], Field(max_length=200)] = []
    #: a driver's truck (its gateway id): the batches they may move
    truck: SiteId | None = None


class UserChange(Model):
    role: Role | None = None
    active: bool | None = None
    sites: Annotated[list[SiteId], Field(max_length=200)] | None = None
    truck: SiteId | None = None
    clear_truck: bool = False
    reason: Text


class AuditOut(FromRow):
    id: int
    ts_ms: int
    actor: str
    action: str
    entity: str
    entity_id: str
    old_value: object
    new_value: object
    reason: str | None

    @field_validator("old_value", "new_value", mode="before")
    @classmethod
    def _decoded(cls, stored: object) -> object:
        """The trail keeps values as JSON text; the answer carries them decoded."""
        return json.loads(stored) if isinstance(stored, str) and stored else None


class AuditCheck(Model):
    intact: bool
    rows: int
    head_hash: str
    problems: list[str]


class TraceStay(Model):
    """A stay as the public sees it: where (kind and place name), from when, to when."""

    place: str
    kind: str
    from_ms: int
    until_ms: int | None


class TraceOut(Model):
    """Public fields only: no user names, no comments, no other batches."""

    trace_code: str
    product: str
    origin_producer: str
    origin_village: str | None
    origin_county: str | None
    journey: list[TraceStay]
    cold_chain_held: bool
    verdict: Literal["accept", "review", "reject", "in_progress"]
    mkt_c: float | None


class PartHealth(Model):
    """One supervised part of the API (its live hub): ok, degraded, stalled or dead."""

    state: Literal["ok", "degraded", "stalled", "dead"]
    reasons: list[str]


class ServiceBeatOut(Model):
    """A collector's or the alert service's last heartbeat, as the API heard it."""

    service: str
    #: what the service said; ``silent`` when its heartbeat has not come for 30 s
    state: Literal["ok", "degraded", "stalled", "dead", "stopped", "silent"]
    reasons: list[str]
    age_s: float


class Health(Model):
    #: ok only when the database answers and the live hub is ok (or off)
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
    broker: Literal["connected", "disconnected", "off"]
    live: PartHealth | None = None
    #: the services' heartbeats (reported; they do not make the API itself unhealthy)
    services: list[ServiceBeatOut] = []


class StepOut(Model):
    after_min: float
    notify: list[str]


class PolicyOut(Model):
    steps: list[StepOut]
    repeat_min: float | None
    quiet_start: str | None
    quiet_end: str | None
    utc_offset_h: float


class PoliciesOut(Model):
    """The escalation policies the alert service runs with (edited in its config file)."""

    configured: bool
    default: PolicyOut | None
    sites: dict[str, PolicyOut]


class SignBatch(Model):
    """An electronic signature: its meaning, the signer's password entered again, and
    why (21 CFR Part 11 §11.50, §11.200)."""

    meaning: Literal["reviewed", "released", "rejected", "held"]
    password: Annotated[str, Field(min_length=1, max_length=200)]
    comment: Text | None = None


class SignatureOut(Model):
    id: int
    meaning: str
    username: str
    #: the signer's name as it was when they signed
    printed_name: str
    signed_ms: int
    #: the SHA-256 of the record as it was signed
    record_sha256: str
    comment: str | None
    #: the record is still what was signed (False: it has changed since)
    matches_record: bool
