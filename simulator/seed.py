"""The simulated county as the alert service sees it: its places come from its county
file (``simulator/county.toml``), applied with the same code as ``coldchain setup
apply``; then batches of the seed programmes' products from named cooperatives, and
calibration records (demo data, created through the audited operations)."""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy import Engine, select

from alerts.calibration import record_calibration
from alerts.county import CountyFile, load, plan, run
from alerts.db import transaction
from alerts.models import Calibration, Site
from alerts.repo import NewBatch, create_batch, handover

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

#: (batch id, profile, product, kg, producer, village, county, location)
BATCHES = [
    (
        "B-YAK-0412",
        "frozen-meat",
        "frozen yak meat",
        1800,
        "Gahai yak cooperative",
        "Gahai",
        "Luqu",
        "cr1",
    ),
    (
        "B-MUT-0413",
        "frozen-meat",
        "frozen mutton",
        950,
        "Dongxiang mutton cooperative",
        "Tangwang",
        "Dongxiang",
        "cr1",
    ),
    (
        "B-BEEF-0414",
        "chilled-meat",
        "chilled beef",
        620,
        "Linxia halal beef cooperative",
        "Hanjiaji",
        "Linxia",
        "cr2",
    ),
    (
        "B-CHK-0415",
        "chilled-meat",
        "local chicken",
        300,
        "Ma family farm",
        "Majiazhuang",
        "Linxia",
        "cr2",
    ),
    (
        "B-APL-0416",
        "apples",
        "apples",
        4000,
        "Jishishan orchard cooperative",
        "Dahejia",
        "Jishishan",
        "pc",
    ),
    (
        "B-HNY-0417",
        "honey-dried-meat",
        "honey",
        240,
        "Kangle beekeepers' cooperative",
        "Hutan",
        "Kangle",
        "ct",
    ),
    (
        "B-YAK-0418",
        "frozen-meat",
        "frozen yak meat",
        700,
        "Gahai yak cooperative",
        "Gahai",
        "Luqu",
        "truck-01.front",
    ),
    (
        "B-SLM-0419",
        "chilled-meat",
        "chilled mutton",
        260,
        "Dongxiang mutton cooperative",
        "Tangwang",
        "Dongxiang",
        "truck-02.rear",
    ),
]


#: the trucks' batches came from a cold room and were loaded half-way through the history
LOADED_FROM = {"truck-01.front": "cr1", "truck-02.rear": "cr2"}


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
        for batch_id, profile, product, kg, producer, village, origin, loc in BATCHES:
            create_batch(
                s,
                NewBatch(
                    id=batch_id,
                    profile_id=profile,
                    product=product,
                    quantity=kg,
                    unit="kg",
                    origin_producer=producer,
                    origin_village=village,
                    origin_county=origin,
                ),
                into_location=LOADED_FROM.get(loc, loc),
                at_ms=since,
                by="warehouse.li",
                temp_c=None,
            )
            if loc in LOADED_FROM:
                handover(
                    s,
                    batch_id,
                    to_location=loc,
                    at_ms=(since + at_ms) // 2,
                    by=f"driver.{loc.split('.')[0]}",
                    temp_c=-19.6 if profile == "frozen-meat" else 2.4,
                    event="loaded",
                )
        for gateway, sensor, ago, correction, due in CALIBRATIONS:
            record_calibration(
                s,
                Calibration(
                    gateway=gateway,
                    sensor=sensor,
                    calibrated_ms=at_ms - ago * DAY_MS,
                    reference_instrument="county metrology institute reference thermometer",
                    correction_c=correction,
                    certificate=f"CAL-{sensor}-{ago}.pdf",
                    next_due_ms=at_ms + due * DAY_MS,
                ),
                actor="quality.wang",
            )
    return True
