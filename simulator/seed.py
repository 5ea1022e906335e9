"""The simulated county as the alert service sees it: its places come from its county
file (``simulator/county.toml``), applied with the same code as ``coldchain setup
apply``; its batches from a warehouse's sheet (``simulator/batches.csv``), imported with
the same code as ``coldchain import batches``; two loaded onto trucks and the
calibration records, through the same checked operations as the API's."""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy import Engine, select

from alerts.calibration import new_calibration
from alerts.county import CountyFile, load, plan, run
from alerts.db import transaction
from alerts.models import Calibration, Site
from alerts.repo import handover
from alerts.repo.scope import Scope
from alerts.repo.users import Role
from api.imports import receive_sheet

ACTOR = "demo.setup"
COUNTY_FILE = Path(__file__).with_name("county.toml")


@functools.cache
def county() -> CountyFile:
    return load(COUNTY_FILE)


def sensors_of() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """location id: (site, [(gateway, sensor), …]) as the county file assigns them."""
    return {
        loc.id: (site.id, [sensor.key for sensor in loc.sensors])
        for site, loc in county().locations()
    }


DAY_MS = 86_400_000

#: (gateway, sensor, days ago, correction °C, days until due from now): one sensor coming
#: due (a reminder), one overdue (reports flag its data), the rest in order
CALIBRATIONS = [
    ("store-gw", "cr1-ctrl.air", 355, -0.3, 10),
    ("store-gw", "cr1-th.temp", 120, 0.1, 245),
    ("store-gw", "cr2-ctrl.air", 90, 0.2, 275),
    ("store-gw", "cr2-th.temp", 90, -0.1, 275),
    ("truck-01", "truck-01-reefer.air", 60, 0.0, 305),
    ("truck-02", "truck-02-reefer.air", 60, 0.3, 305),
    ("ts-gw", "ts-probe.temp", 400, 0.2, -35),
]

#: the batches, as a warehouse's sheet lists them (imported as ``coldchain import
#: batches`` and ``POST /api/batches/import`` do); two were then loaded onto a truck
BATCHES_SHEET = Path(__file__).with_name("batches.csv")
LOADED = {"B-YAK-0418": "truck-01.front", "B-SLM-0419": "truck-02.rear"}


def seed_county(engine: Engine, at_ms: int, batches_since_ms: int | None = None) -> bool:
    """Create the county once (a second call changes nothing): its county file, with
    sensors assigned from a day before ``at_ms``, then its batches and calibrations. The
    batches arrived at ``batches_since_ms`` (default: an hour before ``at_ms``); the
    trucks' batches were loaded from their cold room half-way between then and
    ``at_ms``. True if it seeded."""
    since = at_ms - 3_600_000 if batches_since_ms is None else batches_since_ms
    with transaction(engine) as s:  # the whole county or nothing
        if s.execute(select(Site).limit(1)).first() is not None:
            return False
        run(s, plan(s, county(), at_ms=at_ms - DAY_MS, actor=ACTOR))
        everywhere = Scope(username="warehouse.li", role=Role.OPERATOR, sites=None)
        receive_sheet(
            s,
            BATCHES_SHEET.name,
            BATCHES_SHEET.read_bytes(),
            actor="warehouse.li",
            scope=everywhere,
            at_ms=since,
        )
        for batch_id, truck in LOADED.items():
            handover(
                s,
                batch_id,
                to_location=truck,
                at_ms=(since + at_ms) // 2,
                by=f"driver.{truck.split('.')[0]}",
                temp_c=-19.6 if truck.endswith("front") else 2.4,
                event="loaded",
            )
        for gateway, sensor, ago, correction, due in CALIBRATIONS:
            new_calibration(
                s,
                Calibration(
                    gateway=gateway,
                    sensor=sensor,
                    calibrated_ms=at_ms - ago * DAY_MS,
                    reference_instrument="county metrology institute reference thermometer",
                    correction_c=correction,
                    certificate=f"CAL-{sensor}-{ago}",
                    next_due_ms=at_ms + due * DAY_MS,
                ),
                actor="quality.wang",
                now=at_ms,
            )
    return True
