"""Users scoped to sites: every route, every role, a user of every site and a user of
another site, against the real app under uvicorn and a real database (SQLite and
PostgreSQL). What is outside a user's sites is answered as if it did not exist."""

from __future__ import annotations

import httpx
import pytest

from alerts.repo.users import Role
from tests.api_server import OTHER_SITE, PASSWORD, Api, an_alarm, other_of
from tests.test_api import ROUTES, route_path

#: how each route treats a user of another site
#:   item:   the fixture's alarm, batch or sensor is not found (404)
#:   list:   answered (200), without the fixture's site, alarm, batch or readings
#:   county: county-wide data or an operation of admins (who are given every site)
#:   every:  needs a user of every site (403)
#:   rows:   a sheet's rows of the fixture's site are refused (400), each named
#:   none:   no site's data (sign-in, health, the public trace)
SCOPE: dict[tuple[str, str], str] = {
    ("POST", "/api/auth/login"): "none",
    ("POST", "/api/auth/logout"): "none",
    ("GET", "/api/auth/me"): "none",
    ("POST", "/api/auth/password"): "none",
    ("GET", "/api/sites"): "list",
    ("GET", "/api/sensors/latest"): "list",
    ("GET", "/api/history"): "item",
    ("GET", "/api/series"): "item",
    ("GET", "/api/series.csv"): "item",
    ("GET", "/api/trucks"): "list",
    ("GET", "/api/alarms"): "list",
    ("GET", "/api/alarms/export.csv"): "list",
    ("GET", "/api/alarms/{alarm_id}"): "item",
    ("POST", "/api/alarms/{alarm_id}/ack"): "item",
    ("POST", "/api/alarms/{alarm_id}/assign"): "item",
    ("GET", "/api/batches"): "list",
    ("GET", "/api/batches/{batch_id}"): "item",
    ("POST", "/api/batches/{batch_id}/handover"): "item",
    ("POST", "/api/batches"): "item",
    ("POST", "/api/batches/{batch_id}/split"): "item",
    ("POST", "/api/batches/import"): "rows",
    ("POST", "/api/sensors/import"): "county",
    ("GET", "/api/labels.pdf"): "item",
    ("POST", "/api/scan"): "none",
    ("GET", "/api/batches/{batch_id}/report"): "item",
    ("GET", "/api/batches/{batch_id}/report.csv"): "item",
    ("GET", "/api/batches/{batch_id}/signatures"): "item",
    ("POST", "/api/batches/{batch_id}/signatures"): "item",
    ("GET", "/api/calibrations"): "list",
    ("POST", "/api/calibrations"): "item",
    ("GET", "/api/calibrations/{calibration_id}/certificate"): "item",
    ("GET", "/api/profiles"): "county",
    ("GET", "/api/profiles/{profile_id}"): "county",
    ("PUT", "/api/profiles/{profile_id}"): "every",
    ("GET", "/api/policies"): "county",
    ("GET", "/api/users"): "county",
    ("POST", "/api/users"): "county",
    ("PATCH", "/api/users/{username}"): "county",
    ("POST", "/api/users/{username}/password"): "county",
    ("GET", "/api/setup"): "county",
    ("PUT", "/api/sites/{site_id}"): "county",
    ("PUT", "/api/locations/{location_id}"): "county",
    ("PUT", "/api/gateways/{gateway_id}"): "county",
    ("PUT", "/api/sensors/{gateway}/{sensor}/assignment"): "county",
    ("DELETE", "/api/sensors/{gateway}/{sensor}/assignment"): "county",
    ("GET", "/api/audit"): "every",
    ("GET", "/api/audit/verify"): "every",
    ("GET", "/api/trace/{code}"): "none",
    ("POST", "/api/receipts/{provider}"): "none",
    ("GET", "/api/health"): "none",
    ("GET", "/api/live"): "list",
}

#: bodies that pass validation, so that what answers is the scope check
BODIES: dict[tuple[str, str], object] = {
    ("POST", "/api/batches/{batch_id}/signatures"): {"meaning": "released", "password": "x"},
    ("POST", "/api/alarms/{alarm_id}/ack"): {"comment": "checked the room"},
    ("POST", "/api/alarms/{alarm_id}/assign"): {"assignee": None},
    ("POST", "/api/batches/{batch_id}/handover"): {
        "to_location": "ts.chilled",
        "event": "unloaded",
    },
    ("PUT", "/api/profiles/{profile_id}"): {"profile": {}, "reason": "tighter limits"},
    ("POST", "/api/batches"): {  # into cold room 1: not at their sites
        "id": "B-NEW-1",
        "product": "Yak meat",
        "profile_id": "frozen-meat",
        "quantity": 10,
        "origin_producer": "Gahai cooperative",
        "into_location": "cr1",
    },
    ("POST", "/api/batches/{batch_id}/split"): {"new_id": "B-BEEF-0414-2", "quantity": 1},
}
#: a sheet that receives a batch into cold room 1 (not at their sites)
SHEET = (
    b"id,product,profile_id,quantity,origin_producer,into_location\n"
    b"B-X,Yak,frozen-meat,5,Gahai,cr1\n"
)
#: files sent with a form
FILES: dict[tuple[str, str], dict[str, tuple[str, bytes, str]]] = {
    ("POST", "/api/batches/import"): {"file": ("sheet.csv", SHEET, "text/csv")},
}
#: bodies sent as a form (a file upload)
FORMS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/api/batches/import"): {},
    ("POST", "/api/calibrations"): {  # cold room 2's controller: not at their sites
        "gateway": "store-gw",
        "sensor": "cr2-ctrl.air",
        "calibrated_ms": "1000",
        "reference_instrument": "Fluke 1524",
        "correction_c": "0.1",
        "next_due_ms": "2000",
    },
}


def test_every_route_says_how_it_treats_a_user_of_another_site() -> None:
    assert set(SCOPE) == set(ROUTES)


def _seen(client: httpx.Client, path: str, alarm_id: int) -> bool:
    """Whether a list answer holds anything of the fixture's site (cold room 2)."""
    if path == "/api/live":
        return False  # a stream: its filter is tested with live events in test_api
    reply = client.get(path)
    assert reply.status_code == 200, (path, reply.status_code, reply.text)
    if path.endswith(".csv"):
        return any(line.split(",")[0] == str(alarm_id) for line in reply.text.splitlines())
    found = reply.json()
    if path == "/api/sites":
        return any(s["id"] != OTHER_SITE for s in found)
    if path == "/api/alarms":
        return any(a["id"] == alarm_id for a in found)
    if path == "/api/batches":
        return any(b["id"] == "B-BEEF-0414" for b in found)
    if path == "/api/trucks":  # truck 01's positions are the fleet's, not theirs
        return any(t["gateway"] != "ts-gw" for t in found["trucks"])
    return any(r["gateway"] != "ts-gw" for r in found)  # the latest readings


@pytest.mark.e2e
def test_a_user_of_another_site_sees_and_does_nothing_of_this_one(api: Api) -> None:
    alarm_id = an_alarm(api)
    own = {  # where the route names the user's own things: those of their site
        "username": other_of(Role.VIEWER),
        "site_id": OTHER_SITE,
        "location_id": "ts.chilled",
        "gateway_id": "ts-gw",
        "gateway": "ts-gw",
    }
    clients = {role: api.client(role, other=True) for role in Role}
    checked: dict[str, int] = {}
    try:
        for (method, template), least in ROUTES.items():
            path = route_path(template, alarm_id, **own)
            kind = SCOPE[(method, template)]
            for role, client in clients.items():
                if least is None or not role.may(least):
                    continue  # the role matrix in test_api covers these
                if role is Role.ADMIN:
                    continue  # admins are given every site, whatever their list says
                checked[kind] = checked.get(kind, 0) + 1
                if kind == "list":
                    assert not _seen(client, path, alarm_id), (role, path)
                    continue
                if kind in ("none", "county") or path == "/api/live":
                    continue
                form = FORMS.get((method, template))
                if form is not None:
                    files = FILES.get((method, template))
                    reply = client.request(method, path, data=form, files=files)
                    code = reply.status_code
                    if kind == "rows":
                        assert "row 2, column into_location" in reply.text, reply.text
                else:
                    body = BODIES.get((method, template))
                    code = client.request(method, path, json=body).status_code
                want = {"item": 404, "rows": 400}.get(kind, 403)
                assert code == want, (role, method, path, code)
    finally:
        for client in clients.values():
            client.close()
    assert checked.keys() >= {"item", "list", "every", "rows"}, checked


@pytest.mark.e2e
def test_a_user_of_the_site_reaches_what_the_other_cannot(api: Api) -> None:
    """The control run: the same calls by users of every site are answered."""
    alarm_id = an_alarm(api)
    with api.client(Role.OPERATOR) as mine, api.client(Role.OPERATOR, other=True) as other:
        assert mine.get(f"/api/alarms/{alarm_id}").status_code == 200
        assert other.get(f"/api/alarms/{alarm_id}").status_code == 404
        assert any(a["id"] == alarm_id for a in mine.get("/api/alarms").json())
        assert any(b["id"] == "B-BEEF-0414" for b in mine.get("/api/batches").json())
        assert [s["id"] for s in other.get("/api/sites").json()] == [OTHER_SITE]
        acked = other.post(f"/api/alarms/{alarm_id}/ack", json={"comment": "not mine"})
        assert acked.status_code == 404
        assert mine.post(f"/api/alarms/{alarm_id}/ack", json={"comment": "door shut"}).is_success
        # an alarm is assigned only to someone who can see it, and the answer for
        # someone who cannot is the answer for a name nobody has (no enumeration)
        refused = mine.post(
            f"/api/alarms/{alarm_id}/assign", json={"assignee": other_of(Role.OPERATOR)}
        )
        nobody = mine.post(f"/api/alarms/{alarm_id}/assign", json={"assignee": "no.such.user"})
        assert refused.status_code == nobody.status_code == 404, refused.text
        assert refused.json()["detail"].replace(other_of(Role.OPERATOR), "?") == nobody.json()[
            "detail"
        ].replace("no.such.user", "?")


@pytest.mark.e2e
def test_a_driver_moves_only_the_batches_of_their_truck(api: Api) -> None:
    """Truck 01's driver loads a batch from cold room 2 into truck 01; truck 02's
    driver can neither load it into their truck nor unload it from truck 01."""
    with api.client(Role.DRIVER) as mine, api.client(Role.DRIVER, other=True) as other:
        into_other = other.post(
            "/api/batches/B-BEEF-0414/handover",
            json={"to_location": "truck-02.rear", "event": "loaded"},
        )
        assert into_other.status_code == 404  # cold room 2 is not at their sites
        loaded = mine.post(
            "/api/batches/B-BEEF-0414/handover",
            json={"to_location": "truck-01.rear", "event": "loaded", "temp_c": 3.0},
        )
        assert loaded.status_code == 200, loaded.text
        # not truck 01's: moving a batch between two places of the store is not theirs
        with api.client(Role.OPERATOR) as operator:
            assert operator.post(
                "/api/batches/B-CHK-0415/handover",
                json={"to_location": "cr1", "event": "transferred"},
            ).is_success
        moved = mine.post(
            "/api/batches/B-CHK-0415/handover",
            json={"to_location": "cr2", "event": "transferred"},
        )
        assert moved.status_code == 403, moved.text
        assert "truck" in moved.json()["detail"]


@pytest.mark.e2e
def test_an_admin_resets_a_lost_password_and_the_old_one_stops_working(api: Api) -> None:
    name = other_of(Role.OPERATOR)
    with api.client(Role.OPERATOR, other=True) as before:
        assert before.get("/api/auth/me").status_code == 200
        with api.client(Role.ADMIN) as admin:
            reply = admin.post(f"/api/users/{name}/password")
            assert reply.status_code == 200, reply.text
            new = reply.json()["password"]
            assert admin.post("/api/users/nobody.here/password").status_code == 404
            trail = admin.get("/api/audit", params={"entity": "user", "entity_id": name}).json()
            assert trail[0]["action"] == "user.password"
        assert before.get("/api/auth/me").status_code == 401  # their sessions ended
    with httpx.Client(base_url=api.url, timeout=20) as client:
        old = client.post("/api/auth/login", json={"username": name, "password": PASSWORD})
        assert old.status_code == 401
        fresh = client.post("/api/auth/login", json={"username": name, "password": new})
        assert fresh.status_code == 200
