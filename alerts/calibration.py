"""Calibrations (GB 31605: monitors calibrated periodically, the calibration recorded):
which correction is in force at a reading's time, and the one way a raw reading is
corrected, used alike by live evaluation, the replay after a restart and the reports.
Readings stay raw in the readings store."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.audit import now_ms, record
from alerts.errors import Refused
from alerts.models import (
    Calibration,
    CalibrationCertificate,
    Gateway,
    Location,
    SensorAssignment,
)

#: corrected values are kept to this many decimals (a thousandth of a degree)
DECIMALS = 3

#: one sensor's calibrations, oldest first, per (gateway, sensor)
ByCalibratedSensor = dict[tuple[str, str], list[Calibration]]


@dataclass(frozen=True)
class CalibrationInForce:
    correction_c: float
    calibration_id: int | None
    overdue: bool
    certificate: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.calibration_id,
            "correction_c": self.correction_c,
            "certificate": self.certificate,
            "overdue": self.overdue,
        }


def in_force(calibrations: Sequence[Calibration], at_ms: int) -> CalibrationInForce:
    """The correction in force at a reading's time among one sensor's calibrations
    (oldest first), and whether the sensor was overdue then. A sensor never calibrated
    is overdue and uncorrected."""
    i = bisect.bisect_right([c.calibrated_ms for c in calibrations], at_ms)
    if i == 0:
        return CalibrationInForce(0.0, None, overdue=True)
    cal = calibrations[i - 1]
    return CalibrationInForce(
        cal.correction_c, cal.id, overdue=at_ms > cal.next_due_ms, certificate=cal.certificate
    )


def corrected(calibrations: Sequence[Calibration], at_ms: int, raw_c: float) -> float:
    """A raw temperature with the correction in force at its time applied."""
    return round(raw_c + in_force(calibrations, at_ms).correction_c, DECIMALS)


#: a certificate file is at most this big
MAX_CERTIFICATE_BYTES = 10 * 1024 * 1024
#: the files taken as certificates, by their first bytes
SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
#: a calibration may be stamped this far ahead of the recorder's clock
CLOCK_SLACK_MS = 5 * 60_000


def certificate_type(body: bytes) -> str | None:
    """The media type of a certificate file by its first bytes; None: not one we take."""
    return next((media for magic, media in SIGNATURES if body.startswith(magic)), None)


@dataclass(frozen=True)
class CertificateFile:
    filename: str
    body: bytes


def new_calibration(
    s: Session,
    cal: Calibration,
    *,
    actor: str,
    file: CertificateFile | None = None,
    now: int | None = None,
) -> Calibration:
    """A calibration recorded by a person (the API, the page, the CLI): checked, then
    written with its certificate file and its audit row in the caller's transaction."""
    current = now_ms() if now is None else now
    if s.get(Gateway, cal.gateway) is None:
        raise Refused(f"no gateway {cal.gateway!r}: declare it first")
    if cal.calibrated_ms > current + CLOCK_SLACK_MS:
        raise Refused("a calibration cannot be dated in the future")
    if cal.next_due_ms <= cal.calibrated_ms:
        raise Refused("valid until must be after the calibration")
    if file is not None:
        if len(file.body) > MAX_CERTIFICATE_BYTES:
            raise Refused(f"the certificate file is over {MAX_CERTIFICATE_BYTES // 2**20} MB")
        if certificate_type(file.body) is None:
            raise Refused("the certificate file must be a PDF, PNG or JPEG")
    record_calibration(s, cal, actor=actor, file=file)
    return cal


def record_calibration(
    s: Session, cal: Calibration, *, actor: str, file: CertificateFile | None = None
) -> None:
    s.add(cal)
    digest = None
    if file is not None:
        s.flush()  # its id
        digest = hashlib.sha256(file.body).hexdigest()
        s.add(
            CalibrationCertificate(
                calibration_id=cal.id,
                filename=file.filename[-200:],
                media_type=certificate_type(file.body) or "application/octet-stream",
                size_bytes=len(file.body),
                sha256=digest,
                body=file.body,
            )
        )
    record(
        s,
        actor=actor,
        action="calibration.record",
        entity="sensor",
        entity_id=f"{cal.gateway}/{cal.sensor}",
        new={
            "calibrated_ms": cal.calibrated_ms,
            "reference": cal.reference_instrument,
            "correction_c": cal.correction_c,
            "certificate": cal.certificate,
            "next_due_ms": cal.next_due_ms,
            "certificate_sha256": digest,
        },
    )


def calibrations_by_sensor(s: Session) -> ByCalibratedSensor:
    """Every calibration, per (gateway, sensor), oldest first (detached from ``s``)."""
    out: ByCalibratedSensor = {}
    for cal in s.execute(select(Calibration).order_by(Calibration.calibrated_ms)).scalars():
        s.expunge(cal)
        out.setdefault((cal.gateway, cal.sensor), []).append(cal)
    return out


def calibration_at(s: Session, gateway: str, sensor: str, at_ms: int) -> CalibrationInForce:
    """The correction in force at a reading's time."""
    return in_force(calibrations_by_sensor(s).get((gateway, sensor), []), at_ms)


def calibrations_due(
    s: Session, now: int | None = None, within_ms: int = 14 * 86_400_000
) -> list[tuple[str, str, int]]:
    """(gateway, sensor, next_due_ms) of the latest calibrations coming due: reminders."""
    current = now_ms() if now is None else now
    latest: dict[tuple[str, str], Calibration] = {}
    for cal in s.execute(select(Calibration).order_by(Calibration.calibrated_ms)).scalars():
        latest[(cal.gateway, cal.sensor)] = cal
    return sorted(
        (g, sen, c.next_due_ms)
        for (g, sen), c in latest.items()
        if c.next_due_ms <= current + within_ms
    )


@dataclass(frozen=True)
class SensorDue:
    """A sensor measuring a location now, and its latest calibration (if any)."""

    gateway: str
    sensor: str
    location_id: str
    location_name: str
    site_id: str
    latest: Calibration | None
    has_file: bool

    @property
    def due_ms(self) -> int | None:
        return None if self.latest is None else self.latest.next_due_ms


def due_list(s: Session) -> list[SensorDue]:
    """Every sensor measuring a location now with its latest calibration (door contacts
    are not calibrated): never calibrated first, then by due date (the overdue ones come
    first that way)."""
    latest: dict[tuple[str, str], Calibration] = {}
    for cal in s.execute(select(Calibration).order_by(Calibration.calibrated_ms)).scalars():
        latest[(cal.gateway, cal.sensor)] = cal
    files = set(s.execute(select(CalibrationCertificate.calibration_id)).scalars())
    rows = s.execute(
        select(SensorAssignment, Location)
        .join(Location, Location.id == SensorAssignment.location_id)
        .where(SensorAssignment.until_ms.is_(None), SensorAssignment.role != "door")
    ).all()
    out = []
    for a, loc in rows:
        last = latest.get((a.gateway, a.sensor))
        has_file = last is not None and last.id in files
        out.append(SensorDue(a.gateway, a.sensor, loc.id, loc.name, loc.site_id, last, has_file))
    return sorted(out, key=lambda d: (d.due_ms is not None, d.due_ms or 0, d.gateway, d.sensor))
