"""The simulated county as the alert service sees it: sites, rooms and compartments run
for product profiles, which sensor measures which, and batches of the seed programmes'
products from named cooperatives (demo data, created through the audited operations)."""

from __future__ import annotations

from sqlalchemy import Engine, select

from alerts.calibration import record_calibration
from alerts.db import transaction
from alerts.models import Calibration, Location, Site
from alerts.profiles import load_profiles
from alerts.repo import NewBatch, add_site, assign_sensor, create_batch, handover, save_profile

ACTOR = "demo.setup"

#: location id: (site, name, kind, profile, [(gateway, sensor), …]); one door contact per
#: location (a second contact on the same door would double every door alarm)
LOCATIONS: dict[str, tuple[str, str, str, str, list[tuple[str, str]]]] = {
    "cr1": (
        "county-store",
        "Cold room 1 (frozen)",
        "cold_room",
        "frozen-meat",
        [
            ("store-gw", "cr1-ctrl.air"),
            ("store-gw", "cr1-th.temp"),
            ("store-gw", "cr1-th.rh"),
            ("store-gw", "cr1-ctrl.door"),
        ],
    ),
    "cr2": (
        "county-store",
        "Cold room 2 (chilled)",
        "cold_room",
        "chilled-meat",
        [
            ("store-gw", "cr2-ctrl.air"),
            ("store-gw", "cr2-th.temp"),
            ("store-gw", "cr2-th.rh"),
            ("store-gw", "cr2-ctrl.door"),
        ],
    ),
    "pc": (
        "county-store",
        "Pre-cooling room (fruit)",
        "pre_cooling",
        "apples",
        [
            ("store-gw", "pc-ctrl.air"),
            ("store-gw", "pc-th.temp"),
            ("store-gw", "pc-th.rh"),
            ("store-gw", "pc-ctrl.door"),
        ],
    ),
    "ct": (
        "county-store",
        "Constant-temperature room",
        "constant_temp",
        "honey-dried-meat",
        [("store-gw", "ct-th.temp"), ("store-gw", "ct-probe.temp"), ("store-gw", "ct-th.rh")],
    ),
    "truck-01.front": (
        "county-fleet",
        "Truck 01 front (frozen)",
        "truck_compartment",
        "frozen-meat",
        [("truck-01", "truck-01-reefer.air"), ("truck-01", "truck-01-reefer.door")],
    ),
    "truck-01.rear": (
        "county-fleet",
        "Truck 01 rear (chilled)",
        "truck_compartment",
        "chilled-meat",
        [("truck-01", "truck-01-rear.temp"), ("truck-01", "truck-01-rear.door")],
    ),
    "truck-02.front": (
        "county-fleet",
        "Truck 02 front (frozen)",
        "truck_compartment",
        "frozen-meat",
        [("truck-02", "truck-02-reefer.air"), ("truck-02", "truck-02-reefer.door")],
    ),
    "truck-02.rear": (
        "county-fleet",
        "Truck 02 rear (chilled)",
        "truck_compartment",
        "chilled-meat",
        [("truck-02", "truck-02-rear.temp"), ("truck-02", "truck-02-rear.door")],
    ),
    "ts.chilled": (
        "transfer-station",
        "Transfer station chilled store",
        "station_store",
        "chilled-meat",
        [("ts-gw", "ts-th.temp"), ("ts-gw", "ts-th.rh"), ("ts-gw", "ts-th.door")],
    ),
    "ts.frozen": (
        "transfer-station",
        "Transfer station frozen store",
        "station_store",
        "frozen-meat",
        [("ts-gw", "ts-probe.temp")],
    ),
}


def _role(sensor: str) -> str:
    device, channel = sensor.rsplit(".", 1)
    if channel in ("rh", "door"):
        return {"rh": "humidity", "door": "door"}[channel]
    return "product" if device.endswith("-probe") else "air"


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

SITES = {
    "county-store": ("County public cold store", "cold_store"),
    "county-fleet": ("County delivery fleet", "fleet"),
    "transfer-station": ("Ramen-ingredient transfer station", "station"),
}

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
    """Create the county once (a second call changes nothing). The batches arrived at
    ``batches_since_ms`` (default: an hour before ``at_ms``); the trucks' batches were
    loaded from their cold room half-way between then and ``at_ms``. True if it seeded."""
    since = at_ms - 3_600_000 if batches_since_ms is None else batches_since_ms
    with transaction(engine) as s:  # the whole county or nothing
        if s.execute(select(Site).limit(1)).first() is not None:
            return False
        for product_profile in load_profiles().values():
            save_profile(
                s, product_profile, actor=ACTOR, reason="seed profiles (DOMAIN.md defaults)"
            )
        for site_id, (name, kind) in SITES.items():
            locations = [
                Location(
                    id=loc,
                    site_id=site_id,
                    name=loc_name,
                    kind=loc_kind,
                    profile_id=profile,
                    # trucks stop 12 minutes at each village to unload
                    door_open_max_min=20.0 if loc_kind == "truck_compartment" else 10.0,
                )
                for loc, (site, loc_name, loc_kind, profile, _s) in LOCATIONS.items()
                if site == site_id
            ]
            add_site(
                s, Site(id=site_id, name=name, kind=kind, county="Linxia"), locations, actor=ACTOR
            )
        for loc, (_site, _name, _kind, _profile, sensors) in LOCATIONS.items():
            for gateway, sensor in sensors:
                assign_sensor(
                    s,
                    gateway=gateway,
                    sensor=sensor,
                    location_id=loc,
                    from_ms=at_ms - 86_400_000,
                    actor=ACTOR,
                    role=_role(sensor),
                )
        for batch_id, profile, product, kg, producer, village, county, loc in BATCHES:
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
                    origin_county=county,
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
