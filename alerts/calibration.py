"""Calibrations (GB 31605: monitors calibrated periodically, the calibration recorded):
which correction is in force at a reading's time, and the one way a raw reading is
corrected, used alike by live evaluation, the replay after a restart and the reports.
Readings stay raw in the readings store."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.audit import now_ms, record
from alerts.models import Calibration

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


def record_calibration(s: Session, cal: Calibration, *, actor: str) -> None:
    s.add(cal)
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
