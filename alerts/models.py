"""What the alert service keeps: the places, the sensors in them, the product batches and
where they were when, calibrations, breaches and alarms.

Times are UTC milliseconds (``*_ms``), like everywhere else in coldchain. A stay or an
assignment with ``until_ms`` NULL is the current one.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from alerts.db import Base


class Sealed:
    """A regulated record: the application seals each row it writes (alerts/seals.py)."""

    seal: Mapped[str | None] = mapped_column(String(80))


class Site(Sealed, Base):
    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)  # cold_store, fleet, station
    county: Mapped[str | None] = mapped_column(String(100))
    name_zh: Mapped[str | None] = mapped_column(String(200))
    #: the IANA time zone its people read times in
    timezone: Mapped[str] = mapped_column(
        String(64), nullable=False, default="Asia/Shanghai", server_default="Asia/Shanghai"
    )
    address: Mapped[str | None] = mapped_column(String(300))


class Gateway(Sealed, Base):
    """An edge gateway the county runs: which site it belongs to (its sensors are the
    assignments that name it)."""

    __tablename__ = "gateways"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), nullable=False)
    name: Mapped[str | None] = mapped_column(String(200))


class Location(Sealed, Base):
    """A cold room, pre-cooling room, truck compartment or transfer-station store."""

    __tablename__ = "locations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    #: its name in Chinese (the pages, reports and notifications in Chinese use it)
    name_zh: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    #: a door open longer than this is a breach (door contacts are assigned sensors)
    door_open_max_min: Mapped[float] = mapped_column(Float, nullable=False, default=10.0)
    #: the product profile the room or compartment is run for (its limits apply to its
    #: sensors; each breach names the batches present)
    profile_id: Mapped[str | None] = mapped_column(ForeignKey("profiles.id"))


class SensorAssignment(Sealed, Base):
    """Which sensor measures which location, and since when."""

    __tablename__ = "sensor_assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(String(64), nullable=False)
    sensor: Mapped[str] = mapped_column(String(128), nullable=False)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), nullable=False)
    role: Mapped[str] = mapped_column(String(32), nullable=False, default="air")
    from_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    until_ms: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("sensor_assignments_sensor", "gateway", "sensor"),)


class ProfileRow(Sealed, Base):
    """A product profile as configured now, and the change scheduled to come in force
    at a later time, if any (its history is in the audit trail)."""

    __tablename__ = "profiles"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[str] = mapped_column(Text, nullable=False)  # ProductProfile as JSON
    next_body: Mapped[str | None] = mapped_column(Text)
    next_from_ms: Mapped[int | None] = mapped_column(BigInteger)

    def body_at(self, at_ms: int) -> str:
        """The profile (JSON) in force at that time, from now on."""
        if (
            self.next_body is not None
            and self.next_from_ms is not None
            and at_ms >= self.next_from_ms
        ):
            return self.next_body
        return self.body


class Batch(Sealed, Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), nullable=False)
    product: Mapped[str] = mapped_column(String(200), nullable=False)
    quantity: Mapped[float] = mapped_column(Float, nullable=False)
    unit: Mapped[str] = mapped_column(String(16), nullable=False)
    origin_producer: Mapped[str] = mapped_column(String(200), nullable=False)
    origin_village: Mapped[str | None] = mapped_column(String(100))
    origin_county: Mapped[str | None] = mapped_column(String(100))
    #: the public code printed as a QR on the label (unguessable, not the internal id)
    trace_code: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: the producer's lot number, as on their papers
    lot: Mapped[str | None] = mapped_column(String(64))
    #: the batch this one was split from (its history before the split is that one's)
    split_from: Mapped[str | None] = mapped_column(String(64))


class Stay(Sealed, Base):
    """A batch in a location from one handover to the next (custody)."""

    __tablename__ = "stays"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), nullable=False)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), nullable=False)
    from_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    until_ms: Mapped[int | None] = mapped_column(BigInteger)
    handed_over_by: Mapped[str] = mapped_column(String(128), nullable=False)
    temp_at_handover_c: Mapped[float | None] = mapped_column(Float)
    event: Mapped[str] = mapped_column(String(32), nullable=False)  # into_store, loaded, …

    __table_args__ = (
        Index("stays_location_time", "location_id", "from_ms"),
        Index("stays_batch", "batch_id", "from_ms"),
    )


class Calibration(Sealed, Base):
    """GB 31605: monitors are calibrated periodically and the calibration is recorded."""

    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(String(64), nullable=False)
    sensor: Mapped[str] = mapped_column(String(128), nullable=False)
    calibrated_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    reference_instrument: Mapped[str] = mapped_column(String(200), nullable=False)
    correction_c: Mapped[float] = mapped_column(Float, nullable=False)
    certificate: Mapped[str | None] = mapped_column(String(300))
    next_due_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("calibrations_sensor", "gateway", "sensor", "calibrated_ms"),)


class CalibrationCertificate(Sealed, Base):
    """The certificate file of a calibration (PDF, PNG or JPEG), kept beside it so that a
    backup of the database is the whole record; its hash is in the audit trail."""

    __tablename__ = "calibration_certificates"

    calibration_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("calibrations.id"), primary_key=True
    )
    filename: Mapped[str] = mapped_column(String(200), nullable=False)
    media_type: Mapped[str] = mapped_column(String(64), nullable=False)
    size_bytes: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class BreachRow(Sealed, Base):
    """A breach, keyed by its identity so that re-evaluation upserts it."""

    __tablename__ = "breaches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(String(64), nullable=False)
    sensor: Mapped[str] = mapped_column(String(128), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    level: Mapped[str] = mapped_column(String(16), nullable=False)
    start_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    raised_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    end_ms: Mapped[int | None] = mapped_column(BigInteger)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    min_value: Mapped[float | None] = mapped_column(Float)
    max_value: Mapped[float | None] = mapped_column(Float)
    location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"))
    #: the site (its escalation policy applies); set for gateway-wide breaches too
    site_id: Mapped[str | None] = mapped_column(String(64))
    settings: Mapped[str] = mapped_column(Text, nullable=False)  # snapshot, JSON
    batches: Mapped[str] = mapped_column(Text, nullable=False, default="[]")  # batch ids, JSON

    __table_args__ = (
        UniqueConstraint(
            "gateway", "sensor", "kind", "level", "start_ms", name="breaches_identity"
        ),
    )


class AlarmRow(Sealed, Base):
    """The alarm raised for a breach: its lifecycle (see alerts.lifecycle)."""

    __tablename__ = "alarms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    breach_id: Mapped[int] = mapped_column(ForeignKey("breaches.id"), nullable=False, unique=True)
    level: Mapped[str] = mapped_column(String(16), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    raised_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    ack_comment: Mapped[str | None] = mapped_column(Text)
    acknowledged_ms: Mapped[int | None] = mapped_column(BigInteger)
    cleared_ms: Mapped[int | None] = mapped_column(BigInteger)
    closed_ms: Mapped[int | None] = mapped_column(BigInteger)
    #: the user the alarm is assigned to (the alarm board shows it)
    assigned_to: Mapped[str | None] = mapped_column(String(64))
    #: the excursion was already over when it became known (it happened while the
    #: broker or the service was down): notified once as such, acknowledged as any other
    over_when_known: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )

    __table_args__ = (Index("alarms_state", "state", "raised_ms"),)


class User(Sealed, Base):
    """A person who signs in to the web pages and the API (passwords: argon2id hashes)."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(200), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False)
    created_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: the site ids they may see and act on, a JSON list; empty: every site
    sites: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    #: a driver's truck: the gateway whose compartments they load and unload
    truck: Mapped[str | None] = mapped_column(String(64))
    #: signed in with a one-time password (made for them, shown once): they choose their
    #: own before anything else
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )


class SessionRow(Base):
    """A signed-in session: only the SHA-256 of its random token is kept."""

    __tablename__ = "sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username"), nullable=False)
    created_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)


class Signature(Sealed, Base):
    """An electronic signature on a record (21 CFR Part 11 §11.50, §11.70; EU Annex 11
    §14): who (their printed name as it was), when, what it means, bound to the hash of
    the record as it was signed (alerts/signatures.py)."""

    __tablename__ = "signatures"
    __table_args__ = (Index("signatures_record", "entity", "entity_id", "signed_ms"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(32), nullable=False)  # batch
    entity_id: Mapped[str] = mapped_column(String(64), nullable=False)
    meaning: Mapped[str] = mapped_column(String(16), nullable=False)
    username: Mapped[str] = mapped_column(ForeignKey("users.username"), nullable=False)
    printed_name: Mapped[str] = mapped_column(String(200), nullable=False)
    signed_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    record_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    comment: Mapped[str | None] = mapped_column(Text)


class SignInFailure(Base):
    """A failed sign-in, under each key it counts for (a user name with an address, an
    address): read by every API replica (alerts/repo/signin.py)."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (
        Index("ix_sign_in_failures_key_ts", "key", "ts_ms"),
        Index("ix_sign_in_failures_ts", "ts_ms"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    ts_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)


class EvaluatorState(Base):
    """What a sensor's evaluation has under way (a delay counting, time toward a
    cumulative allowance), saved by a service that has no readings store to replay
    (docs/design-alerts.md, "Restarts"); ``signature``: the limits it was judged by."""

    __tablename__ = "evaluator_states"

    gateway: Mapped[str] = mapped_column(String(64), primary_key=True)
    sensor: Mapped[str] = mapped_column(String(128), primary_key=True)
    signature: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(Text, nullable=False)
    saved_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)


class QuarantineRow(Base):
    """A message the alert service could not judge (its processing failed): kept aside
    with the reason, acknowledged, and put back by ``coldchain quarantine replay``."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    topic: Mapped[str] = mapped_column(String(256), nullable=False)
    payload: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    #: when an operator asked for it to be put back (the service replays it next tick)
    replay_ms: Mapped[int | None] = mapped_column(BigInteger)
