"""A county set up from its county file with ``coldchain setup``, on SQLite and on
PostgreSQL: applied from an empty database, applied again (nothing changes), exported
and applied to a fresh database (the same state), a sensor moved (its history kept),
and files that are wrong in the ways people get them wrong."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alerts.county import CountyFile, GatewayIn, load
from alerts.db import AuditRow, make_engine, reading, transaction
from alerts.models import Location, ProfileRow, SensorAssignment, Site, User
from alerts.repo import location_of
from alerts.repo.users import Role, authenticate, create_user
from simulator.seed import COUNTY_FILE
from tests.api_server import Api, user_of

DAY_MS = 86_400_000


def setup(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "setup", *args],
        env={"COLDCHAIN_DB_URL": db_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_demo_county_file_applies_once_and_round_trips(db_url: str, tmp_path: Path) -> None:
    demo = load(COUNTY_FILE)
    first = setup(db_url, "apply", str(COUNTY_FILE))
    assert first.returncode == 0, first.stderr
    assert "add site county-store" in first.stdout
    assert "assign store-gw/cr1-th.temp to cr1 as air" in first.stdout
    engine = make_engine(db_url)
    with reading(engine) as s:
        assert s.scalar(select(func.count()).select_from(Site)) == len(demo.sites)
        assert s.scalar(select(func.count()).select_from(Location)) == len(demo.locations())
        assert s.scalar(select(func.count()).select_from(SensorAssignment)) == sum(
            len(loc.sensors) for _, loc in demo.locations()
        )
        # the shipped profiles, taken with default_profiles = true
        assert "frozen-meat" in set(s.execute(select(ProfileRow.id)).scalars())
        store = s.get(Site, "county-store")
        assert store is not None and store.name_zh == "县公共冷库"
        room = s.get(Location, "cr2")
        assert room is not None and room.name_zh == "2号冷库（冷藏）"
        audited = s.scalar(select(func.count()).select_from(AuditRow))
    again = setup(db_url, "apply", str(COUNTY_FILE))
    assert again.returncode == 0, again.stderr
    assert "nothing to change" in again.stdout
    with reading(engine) as s:
        assert s.scalar(select(func.count()).select_from(AuditRow)) == audited
    engine.dispose()

    exported = tmp_path / "exported.toml"
    assert setup(db_url, "export", "-o", str(exported)).returncode == 0
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    applied = setup(fresh, "apply", str(exported))
    assert applied.returncode == 0, applied.stderr
    assert setup(fresh, "export").stdout == exported.read_text(encoding="utf-8")


def test_a_dry_run_changes_nothing(db_url: str) -> None:
    dry = setup(db_url, "apply", "--dry-run", str(COUNTY_FILE))
    assert dry.returncode == 0, dry.stderr
    assert "would be made (dry run: nothing changed)" in dry.stdout
    engine = make_engine(db_url)
    with reading(engine) as s:
        assert s.scalar(select(func.count()).select_from(Site)) == 0
    engine.dispose()


ROOM_A_SENSORS = (
    'sensors = [{ sensor = "gw1/probe-1.temp" }, { sensor = "gw1/door-1.door", role = "door" }]'
)
COUNTY = f"""
[[profiles]]
id = "chilled"
name = "Chilled"
[profiles.warning]
high_c = 4.0
[profiles.critical]
high_c = 7.0

[[gateways]]
id = "gw1"
site = "s1"

[[sites]]
id = "s1"
kind = "cold_store"
name = "Store"

[[sites.locations]]
id = "room-a"
kind = "cold_room"
name = "Room A"
profile = "chilled"
{ROOM_A_SENSORS}

[[sites.locations]]
id = "room-b"
kind = "cold_room"
name = "Room B"
profile = "chilled"
sensors = []
"""


def test_a_sensor_moved_in_the_file_keeps_its_history(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "county.toml"
    path.write_text(COUNTY, encoding="utf-8")
    assert setup(db_url, "apply", "--since", "2026-11-01T08:00+08:00", str(path)).returncode == 0
    # the probe goes to room B, the door contact is taken out
    moved = COUNTY.replace("sensors = []", 'sensors = [{ sensor = "gw1/probe-1.temp" }]').replace(
        ROOM_A_SENSORS, "sensors = []"
    )
    path.write_text(moved, encoding="utf-8")
    changed = setup(db_url, "apply", "--since", "2026-11-02T08:00+08:00", str(path))
    assert changed.returncode == 0, changed.stderr
    assert "end assignment of gw1/door-1.door to room-a" in changed.stdout
    assert "assign gw1/probe-1.temp to room-b as air (was room-a, air)" in changed.stdout
    day1 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)  # the first apply
    engine = make_engine(db_url)
    with reading(engine) as s:
        assert location_of(s, "gw1", "probe-1.temp", day1 + 3_600_000) == "room-a"
        assert location_of(s, "gw1", "probe-1.temp", day1 + 2 * DAY_MS) == "room-b"
        assert location_of(s, "gw1", "door-1.door", day1 + 2 * DAY_MS) is None
        actions = list(s.execute(select(AuditRow.action).order_by(AuditRow.id)).scalars())
    engine.dispose()
    assert actions.count("sensor.assign") == 3
    assert actions.count("sensor.unassign") == 1


def test_a_wrong_file_names_the_file_the_field_and_what_was_expected(
    db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "county.toml"
    cases = {
        COUNTY.replace('profile = "chilled"\nsensors = []', 'profile = "frozen"\nsensors = []'): (
            "sites[0].locations[1].profile: no profile 'frozen' in the file or the database"
        ),
        COUNTY.replace('site = "s1"', 'site = "s2"'): "gateways[0].site: no site 's2'",
        COUNTY.replace("sensors = []", 'sensors = [{ sensor = "gw1/probe-1.temp" }]'): (
            "sensor gw1/probe-1.temp measures both room-a and room-b"
        ),
        COUNTY.replace('kind = "cold_room"', 'kind = "freezer"', 1): "kind",
        COUNTY.replace('name = "Store"', 'name = "Store"\ntimezone = "China"'): (
            "an IANA time zone such as Asia/Shanghai"
        ),
        COUNTY.replace('name = "Store"', 'name = "Store"\ncolour = "blue"'): "colour",
    }
    for text, expected in cases.items():
        path.write_text(text, encoding="utf-8")
        result = setup(db_url, "apply", str(path))
        assert result.returncode == 2, (expected, result.stdout)
        assert str(path) in result.stderr
        assert expected in result.stderr, result.stderr
    engine = make_engine(db_url)
    with reading(engine) as s:  # each refused whole: nothing written
        assert s.scalar(select(func.count()).select_from(Site)) == 0
    engine.dispose()


@pytest.mark.e2e
def test_a_site_set_up_through_the_api_alone_is_what_the_file_says(api: Api) -> None:
    with api.client(Role.ADMIN) as admin:
        site = {"kind": "cold_store", "name": "Township store", "name_zh": "乡镇冷库"}
        assert admin.put("/api/sites/town-store", json=site).json() == {
            "id": "town-store",
            "changed": True,
        }
        assert admin.put("/api/sites/town-store", json=site).json()["changed"] is False
        bad_zone = admin.put("/api/sites/town-store", json={**site, "timezone": "China"})
        assert bad_zone.status_code == 422 and "IANA" in bad_zone.text
        assert admin.put("/api/gateways/town-gw", json={"site": "town-store"}).status_code == 200
        room = {"site": "town-store", "kind": "cold_room", "name": "Room 1", "profile": "apples"}
        assert admin.put("/api/locations/tr1", json=room).status_code == 200
        nowhere = admin.put("/api/locations/tr2", json={**room, "site": "nowhere"})
        assert nowhere.status_code == 400 and "no site 'nowhere'" in nowhere.text
        assigned = admin.put(
            "/api/sensors/town-gw/tr1-th.temp/assignment",
            json={"location": "tr1", "from_ms": api.t0_ms},
        )
        assert assigned.status_code == 200, assigned.text
        door = admin.put(
            "/api/sensors/town-gw/tr1-th.door/assignment",
            json={"location": "tr1", "role": "door", "from_ms": api.t0_ms},
        )
        assert door.status_code == 200
        ended = admin.delete(
            "/api/sensors/town-gw/tr1-th.door/assignment", params={"at_ms": api.t0_ms + 1}
        )
        assert ended.status_code == 200
        county = CountyFile.model_validate(admin.get("/api/setup").json())
        trail = admin.get("/api/audit", params={"entity": "site"})
    (town,) = [x for x in county.sites if x.id == "town-store"]
    (tr1,) = town.locations
    assert (town.name_zh, tr1.profile, [x.sensor for x in tr1.sensors]) == (
        "乡镇冷库",
        "apples",
        ["town-gw/tr1-th.temp"],
    )
    assert GatewayIn(id="town-gw", site="town-store") in county.gateways
    assert trail.status_code == 200
    assert any(
        (t["action"], t["entity_id"], t["actor"]) == ("site.add", "town-store", user_of(Role.ADMIN))
        for t in trail.json()
    )
    # the command line exports the same county, and applying it changes nothing
    db_url = str(api.engine.url.render_as_string(hide_password=False))
    exported = setup(db_url, "export")
    assert exported.returncode == 0, exported.stderr
    assert CountyFile.model_validate(tomllib.loads(exported.stdout)) == county
    path = api.readings_db.parent / "exported.toml"
    path.write_text(exported.stdout, encoding="utf-8")
    again = setup(db_url, "apply", str(path))
    assert again.returncode == 0 and "nothing to change" in again.stdout, again.stdout


def test_users_come_from_the_file_with_their_sites_and_a_password_shown_once(
    db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "county.toml"
    users = """
[[users]]
username = "li.store"
display_name = "Li Wei"
role = "operator"
sites = ["s1"]

[[users]]
username = "wang.driver"
role = "driver"
sites = ["s1"]
truck = "gw1"
password_env = "WANG_FIRST_PASSWORD"
"""
    path.write_text(COUNTY + users, encoding="utf-8")
    env = {
        "COLDCHAIN_DB_URL": db_url,
        "PATH": "/usr/bin:/bin",
        "WANG_FIRST_PASSWORD": "yak butter tea 42",
    }
    first = subprocess.run(
        [sys.executable, "-m", "ops.cli", "setup", "apply", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    assert "add user li.store (operator)" in first.stdout
    (shown,) = [line for line in first.stdout.splitlines() if "one-time password" in line]
    password = shown.rsplit(": ", 1)[1]
    assert "wang.driver" not in shown  # their first password came from the environment
    engine = make_engine(db_url)
    with reading(engine) as s:
        assert authenticate(s, "li.store", password) is not None
        assert authenticate(s, "wang.driver", "yak butter tea 42") is not None
        li = s.get(User, "li.store")
        assert li is not None and json.loads(li.sites) == ["s1"]
    # applying again changes nothing; a changed site list is a change of that user only
    assert "nothing to change" in setup(db_url, "apply", str(path)).stdout
    path.write_text(
        COUNTY + users.replace('role = "operator"\nsites = ["s1"]', 'role = "quality"\nsites = []'),
        encoding="utf-8",
    )
    changed = setup(db_url, "apply", str(path))
    assert changed.returncode == 0, changed.stderr
    assert "change user li.store: role 'operator' -> 'quality', sites ['s1'] -> []" in (
        changed.stdout
    )
    assert "one-time password" not in changed.stdout
    with reading(engine) as s:
        li = s.get(User, "li.store")
        assert li is not None and (li.role, li.sites) == ("quality", "[]")
        # the password still works: changing a user leaves it
        assert authenticate(s, "li.store", password) is not None
    engine.dispose()
    exported = setup(db_url, "export").stdout
    assert 'username = "wang.driver"' in exported and 'truck = "gw1"' in exported
    assert "password" not in exported


def test_a_user_of_a_site_that_does_not_exist_is_refused(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "county.toml"
    path.write_text(
        COUNTY + '\n[[users]]\nusername = "li.store"\nrole = "operator"\nsites = ["s9"]\n',
        encoding="utf-8",
    )
    refused = setup(db_url, "apply", str(path))
    assert refused.returncode == 2
    assert "users[0].sites: no site 's9'" in refused.stderr


def test_users_taken_out_of_the_file_are_listed_or_deactivated_but_never_an_admin(
    db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "county.toml"
    both = (
        '\n[[users]]\nusername = "li.store"\nrole = "operator"\n'
        '\n[[users]]\nusername = "ma.quality"\nrole = "quality"\n'
    )
    path.write_text(COUNTY + both, encoding="utf-8")
    assert setup(db_url, "apply", str(path)).returncode == 0
    engine = make_engine(db_url)
    with transaction(engine) as s:
        create_user(s, "zhao.admin", "barley field sunrise", Role.ADMIN, actor="test")
    engine.dispose()
    path.write_text(
        COUNTY + '\n[[users]]\nusername = "li.store"\nrole = "operator"\n', encoding="utf-8"
    )
    listed = setup(db_url, "apply", str(path))
    assert "(not in the file, left as it is: user ma.quality)" in listed.stdout
    assert "nothing to change" in listed.stdout
    dry = setup(db_url, "apply", "--dry-run", "--deactivate-missing", str(path))
    assert "deactivate user ma.quality (not in the file)" in dry.stdout
    assert "(not in the file, left as it is: user zhao.admin)" in dry.stdout
    done = setup(db_url, "apply", "--deactivate-missing", str(path))
    assert done.returncode == 0 and "1 change made" in done.stdout, done.stdout
    engine = make_engine(db_url)
    with reading(engine) as s:
        states = {u.username: u.active for u in s.execute(select(User)).scalars()}
    engine.dispose()
    assert states == {"li.store": True, "ma.quality": False, "zhao.admin": True}
    again = setup(db_url, "apply", "--deactivate-missing", str(path))
    assert "nothing to change" in again.stdout  # an inactive user is not deactivated twice
