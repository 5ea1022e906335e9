"""Batches and sensors from a spreadsheet, CSV or Excel (.xlsx): the columns are the
fields of the API's bodies (``POST /api/batches``; a sensor's gateway, sensor, location
and role), each row is checked like a body, and every problem is named by file, row and
column before anything is written; then all rows go in one transaction, or none. Rows
already in the database as they say are left as they are, so a sheet imported twice
changes nothing the second time (docs/design-county.md, "Import")."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Annotated, TypeVar

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from alerts.county import Id, SensorRole
from alerts.db import transaction
from alerts.errors import Refused
from alerts.models import Batch, Gateway, Location, ProfileRow
from alerts.repo import NewBatch, create_batch
from alerts.repo.scope import Scope
from alerts.repo.sites import assign_sensor, current_assignment
from api.schemas import Model, Receive

M = TypeVar("M", bound=BaseModel)
MAX_ROWS = 5000
MAX_BYTES = 5 * 2**20
#: an .xlsx workbook is a zip file
ZIP_MAGIC = b"PK\x03\x04"


class SensorRow(Model):
    gateway: Id
    sensor: Annotated[str, Field(pattern=r"^[A-Za-z0-9][^/\s]*$", max_length=128)]
    location: Id
    role: SensorRole = "air"


class ImportRefused(Refused):
    """Nothing was written: each problem names the file, the row and the column (the API
    answers 400 with the list)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Imported:
    added: list[str] = field(default_factory=list)
    #: already in the database as the sheet says
    unchanged: list[str] = field(default_factory=list)
    dry_run: bool = False


def read_upload(name: str, stream: IO[bytes]) -> bytes:
    data = stream.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ImportRefused([f"{name}: over {MAX_BYTES // 2**20} MB: split the sheet"])
    return data


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a spreadsheet's 1001.0 is the id 1001
    return str(value).strip()


def _text(name: str, data: bytes) -> str:
    """A CSV as Excel saves it: UTF-8 (with or without its mark), or on a Chinese
    Windows, GB 18030."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ImportRefused([f"{name}: not a CSV in UTF-8 or GB 18030, nor an .xlsx workbook"])


def read_table(name: str, data: bytes) -> list[tuple[int, dict[str, str]]]:
    """The rows of the first sheet (or the CSV) under its header row, with the row
    numbers the spreadsheet shows (the header is row 1); empty rows left out."""
    if data.startswith(ZIP_MAGIC):
        from openpyxl import load_workbook

        try:
            sheet = load_workbook(io.BytesIO(data), read_only=True, data_only=True).worksheets[0]
        except Exception as exc:  # openpyxl raises many kinds on a damaged file
            raise ImportRefused([f"{name}: not a readable .xlsx workbook ({exc})"]) from None
        table: Iterator[list[str]] = (
            [_cell(v) for v in row] for row in sheet.iter_rows(values_only=True)
        )
    else:
        table = iter(csv.reader(io.StringIO(_text(name, data))))
    header = [h.strip().lower() for h in next(table, [])]
    if not any(header):
        raise ImportRefused([f"{name}: no header row (the first row names the columns)"])
    rows: list[tuple[int, dict[str, str]]] = []
    for number, values in enumerate(table, start=2):
        if not any(v.strip() for v in values):
            continue
        if len(rows) == MAX_ROWS:
            raise ImportRefused([f"{name}: more than {MAX_ROWS} rows: split the sheet"])
        cells = {h: v.strip() for h, v in zip(header, values, strict=False) if h and v.strip()}
        rows.append((number, cells))
    return rows


def checked(
    model: type[M], name: str, rows: list[tuple[int, dict[str, str]]]
) -> list[tuple[int, M]]:
    out: list[tuple[int, M]] = []
    problems: list[str] = []
    for number, cells in rows:
        try:
            out.append((number, model.model_validate(cells)))
        except ValidationError as exc:
            for e in exc.errors():
                column = ".".join(str(part) for part in e["loc"]) or "?"
                problems.append(f"{name} row {number}, column {column}: {e['msg']}")
    if problems:
        raise ImportRefused(problems)
    return out


def import_batches(
    engine: Engine,
    name: str,
    data: bytes,
    *,
    actor: str,
    scope: Scope,
    dry_run: bool = False,
    at_ms: int | None = None,
) -> Imported:
    """Receive every batch of the sheet into its room (as ``POST /api/batches`` does),
    now or at ``at_ms`` (a sheet of batches received earlier), in one transaction."""
    with transaction(engine) as s:
        return receive_sheet(s, name, data, actor=actor, scope=scope, dry_run=dry_run, at_ms=at_ms)


def receive_sheet(
    s: Session,
    name: str,
    data: bytes,
    *,
    actor: str,
    scope: Scope,
    dry_run: bool = False,
    at_ms: int | None = None,
) -> Imported:
    """:func:`import_batches` in the caller's transaction."""
    items = checked(Receive, name, read_table(name, data))
    done = Imported(dry_run=dry_run)
    problems: list[str] = []
    new: list[Receive] = []
    seen: set[str] = set()
    for number, item in items:
        where = f"{name} row {number}"
        if item.id in seen:
            problems.append(f"{where}, column id: {item.id!r} is in the sheet twice")
        seen.add(item.id)
        if s.get(Batch, item.id) is not None:
            done.unchanged.append(item.id)
            continue
        room = s.get(Location, item.into_location)
        if room is None or not scope.site(room.site_id):
            problems.append(
                f"{where}, column into_location: no location {item.into_location!r} at your sites"
            )
        if s.get(ProfileRow, item.profile_id) is None:
            problems.append(f"{where}, column profile_id: no profile {item.profile_id!r}")
        new.append(item)
    if problems:
        raise ImportRefused(problems)
    if dry_run:
        done.added = [item.id for item in new]
        return done
    when = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    for item in new:
        fields = item.model_dump(exclude={"into_location", "temp_c"})
        create_batch(
            s,
            NewBatch(**fields),
            into_location=item.into_location,
            at_ms=when,
            by=actor,
            temp_c=item.temp_c,
        )
        done.added.append(item.id)
    return done


def import_sensors(
    engine: Engine, name: str, data: bytes, *, actor: str, dry_run: bool = False
) -> Imported:
    """Assign every sensor of the sheet to its location from now on (a sensor that
    measured another location moves, keeping its history)."""
    items = checked(SensorRow, name, read_table(name, data))
    done = Imported(dry_run=dry_run)
    with transaction(engine) as s:
        problems, moves = [], []
        seen: set[tuple[str, str]] = set()
        for number, item in items:
            where = f"{name} row {number}"
            key = (item.gateway, item.sensor)
            if key in seen:
                problems.append(f"{where}, column sensor: {item.sensor!r} is in the sheet twice")
            seen.add(key)
            if s.get(Gateway, item.gateway) is None:
                problems.append(f"{where}, column gateway: no gateway {item.gateway!r}")
            if s.get(Location, item.location) is None:
                problems.append(f"{where}, column location: no location {item.location!r}")
            now = current_assignment(s, item.gateway, item.sensor)
            if now is not None and (now.location_id, now.role) == (item.location, item.role):
                done.unchanged.append(f"{item.gateway}/{item.sensor}")
                continue
            moves.append(item)
        if problems:
            raise ImportRefused(problems)
        at_ms = time.time_ns() // 1_000_000
        for item in moves:
            if not dry_run:
                assign_sensor(
                    s,
                    gateway=item.gateway,
                    sensor=item.sensor,
                    location_id=item.location,
                    from_ms=at_ms,
                    actor=actor,
                    role=item.role,
                )
            done.added.append(f"{item.gateway}/{item.sensor}")
    return done
