"""``coldchain calibrations``: record a calibration with its certificate file, list the
sensors by due date (docs/design-county.md, "Calibrations")."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from ops.cli.common import db_url_option, fail

DATE = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M%z"])


def _ms(when: datetime) -> int:
    """A date without a time is the county's midnight (UTC+8)."""
    if when.tzinfo is None:
        return int(when.replace(tzinfo=UTC).timestamp() * 1000) - 8 * 3_600_000
    return int(when.timestamp() * 1000)


@click.group()
def calibrations() -> None:
    """Sensor calibrations (GB 31605): record them, see which are due."""


@calibrations.command("record")
@click.argument("sensor")
@click.option("--offset", "correction_c", type=float, required=True, help="°C added to readings")
@click.option("--reference", required=True, help="the reference instrument")
@click.option("--valid-until", type=DATE, required=True, help="YYYY-MM-DD (county time)")
@click.option("--calibrated", type=DATE, default=None, help="YYYY-MM-DD (default: now)")
@click.option("--certificate-no", default=None, help="the certificate's number")
@click.option(
    "--certificate",
    "certificate_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="the certificate file (PDF, PNG or JPEG), kept with the calibration",
)
@click.option("--actor", required=True, help="who calibrated or recorded it (the audit trail)")
@db_url_option
def record(
    sensor: str,
    correction_c: float,
    reference: str,
    valid_until: datetime,
    calibrated: datetime | None,
    certificate_no: str | None,
    certificate_file: Path | None,
    actor: str,
    db_url: str,
) -> None:
    """Record a calibration of SENSOR (gateway/sensor): its offset applies to the
    sensor's readings from then on. Audited, with the file's SHA-256."""
    from alerts.calibration import CertificateFile, new_calibration
    from alerts.db import make_engine, transaction, upgrade
    from alerts.errors import DomainError
    from alerts.models import Calibration

    gateway, _, name = sensor.partition("/")
    if not gateway or not name:
        fail(f"SENSOR: expected gateway/sensor, such as store-gw/cr1-th.temp, not {sensor!r}", 2)
    at_ms = time.time_ns() // 1_000_000 if calibrated is None else _ms(calibrated)
    file = None
    if certificate_file is not None:
        file = CertificateFile(certificate_file.name, certificate_file.read_bytes())
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with transaction(engine) as s:
            cal = Calibration(
                gateway=gateway,
                sensor=name,
                calibrated_ms=at_ms,
                reference_instrument=reference,
                correction_c=correction_c,
                certificate=certificate_no,
                next_due_ms=_ms(valid_until),
            )
            new_calibration(s, cal, actor=actor, file=file)
            s.flush()
            cal_id = cal.id
    except DomainError as exc:
        fail(f"refused, nothing recorded: {exc}", 1)
    finally:
        engine.dispose()
    click.echo(f"calibration #{cal_id} of {sensor} recorded ({correction_c:+.2f} °C)")


@calibrations.command("due")
@click.option("--within-days", type=int, default=30, show_default=True)
@db_url_option
def due(within_days: int, db_url: str) -> None:
    """The sensors measuring a location now: never calibrated, overdue, or due within
    the days given (the others are fine and not listed)."""
    from alerts.calibration import due_list
    from alerts.db import make_engine, reading

    now = time.time_ns() // 1_000_000
    engine = make_engine(db_url)
    try:
        with reading(engine) as s:
            rows = due_list(s)
    finally:
        engine.dispose()
    listed = 0
    for d in rows:
        if d.due_ms is not None and d.due_ms >= now + within_days * 86_400_000:
            continue
        listed += 1
        when = (
            "never calibrated"
            if d.due_ms is None
            else ("overdue since " if d.due_ms < now else "due ")
            + datetime.fromtimestamp(d.due_ms / 1000 + 8 * 3600, UTC).strftime("%Y-%m-%d")
        )
        click.echo(f"{d.gateway}/{d.sensor}\t{d.location_id}\t{when}")
    click.echo(f"{listed} sensor(s) to calibrate within {within_days} days", err=True)


COMMANDS = (calibrations,)
