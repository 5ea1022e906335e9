"""The web API against the real app served by uvicorn, a real database (SQLite and
PostgreSQL), a real readings store and the real broker for live updates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import paho.mqtt.client as mqtt
import pytest
from fastapi.routing import APIRoute
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy.orm import Session

from alerts.calibration import calibration_at
from alerts.repo.users import Role
from api.app import ROUTERS
from api.deps import require
from coldchain import wire
from coldchain.wire import Quality, Reading, ReadingsBatch, Stream
from tests.api_server import OTHER_SITE, PASSWORD, Api, an_alarm, user_of
from tests.harness import wait_for

MIN = 60_000

#: the specification: every route and the least role that may call it (None: public)
ROUTES: dict[tuple[str, str], Role | None] = {
    ("POST", "/api/auth/login"): None,
    ("POST", "/api/auth/logout"): None,
    ("GET", "/api/auth/me"): Role.VIEWER,
    ("POST", "/api/auth/password"): Role.VIEWER,
    ("GET", "/api/sites"): Role.VIEWER,
    ("GET", "/api/sensors/latest"): Role.VIEWER,
    ("GET", "/api/history"): Role.OPERATOR,
    ("GET", "/api/series"): Role.OPERATOR,
    ("GET", "/api/series.csv"): Role.OPERATOR,
    ("GET", "/api/trucks"): Role.OPERATOR,
    ("GET", "/api/alarms"): Role.VIEWER,
    ("GET", "/api/alarms/export.csv"): Role.VIEWER,
    ("GET", "/api/alarms/{alarm_id}"): Role.VIEWER,
    ("POST", "/api/alarms/{alarm_id}/ack"): Role.OPERATOR,
    ("POST", "/api/alarms/{alarm_id}/assign"): Role.OPERATOR,
    ("GET", "/api/batches"): Role.VIEWER,
    ("GET", "/api/batches/{batch_id}"): Role.VIEWER,
    ("POST", "/api/batches/{batch_id}/handover"): Role.DRIVER,
    ("POST", "/api/batches"): Role.OPERATOR,
    ("POST", "/api/batches/{batch_id}/split"): Role.OPERATOR,
    ("POST", "/api/batches/import"): Role.OPERATOR,
    ("POST", "/api/sensors/import"): Role.ADMIN,
    ("GET", "/api/labels.pdf"): Role.OPERATOR,
    ("POST", "/api/scan"): Role.DRIVER,
    ("GET", "/api/batches/{batch_id}/report"): Role.QUALITY,
    ("GET", "/api/batches/{batch_id}/report.csv"): Role.QUALITY,
    ("GET", "/api/batches/{batch_id}/signatures"): Role.QUALITY,
    ("POST", "/api/batches/{batch_id}/signatures"): Role.QUALITY,
    ("GET", "/api/calibrations"): Role.VIEWER,
    ("POST", "/api/calibrations"): Role.QUALITY,
    ("GET", "/api/calibrations/{calibration_id}/certificate"): Role.VIEWER,
    ("GET", "/api/profiles"): Role.VIEWER,
    ("GET", "/api/profiles/{profile_id}"): Role.VIEWER,
    ("PUT", "/api/profiles/{profile_id}"): Role.QUALITY,
    ("GET", "/api/policies"): Role.VIEWER,
    ("GET", "/api/users"): Role.ADMIN,
    ("POST", "/api/users"): Role.ADMIN,
    ("PATCH", "/api/users/{username}"): Role.ADMIN,
    ("POST", "/api/users/{username}/password"): Role.ADMIN,
    ("GET", "/api/setup"): Role.ADMIN,
    ("PUT", "/api/sites/{site_id}"): Role.ADMIN,
    ("PUT", "/api/locations/{location_id}"): Role.ADMIN,
    ("PUT", "/api/gateways/{gateway_id}"): Role.ADMIN,
    ("PUT", "/api/sensors/{gateway}/{sensor}/assignment"): Role.ADMIN,
    ("DELETE", "/api/sensors/{gateway}/{sensor}/assignment"): Role.ADMIN,
    ("GET", "/api/audit"): Role.QUALITY,
    ("GET", "/api/audit/verify"): Role.QUALITY,
    ("GET", "/api/trace/{code}"): None,
    ("POST", "/api/receipts/{provider}"): None,
    ("GET", "/api/health"): None,
    ("GET", "/api/live"): Role.VIEWER,
}


def declared_role(route: APIRoute) -> Role | None:
    for dependency in route.dependant.dependencies:
        role = getattr(dependency.call, "required_role", None)
        if role is not None:
            return Role(role)
    return None


def test_every_route_is_in_the_role_specification_and_enforces_it(api: Api) -> None:
    found = {
        (method, route.path): declared_role(route)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert found == ROUTES
    assert require(Role.OPERATOR).required_role is Role.OPERATOR  # type: ignore[attr-defined]


def _call(client: httpx.Client, method: str, path: str) -> int:
    if path == "/api/live":
        with client.stream("GET", path) as reply:
            return reply.status_code
    # an empty body: refused before validation when the role is wrong, 422 when it is right
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return client.request(method, path, json=body).status_code


def route_path(template: str, alarm_id: int, **values: str) -> str:
    """A route's path with its parameters filled in: the fixture's alarm, batch, cold
    room 2's sensor; ``values`` (e.g. ``site_id``) take the place of the defaults."""
    fill = {
        "alarm_id": str(alarm_id),
        "batch_id": "B-BEEF-0414",
        "profile_id": "chilled-meat",
        "username": "nobody.here",  # a password reset must not end a session in use
        "code": "ABCDEFGHJKLM",
        "site_id": "county-store",
        "location_id": "cr1",
        "gateway_id": "store-gw",
        "gateway": "store-gw",
        "sensor": "no-such.temp",
        "calibration_id": "1",
        "provider": "tencent",
        **values,
    }
    path = template
    for key, value in fill.items():
        path = path.replace("{" + key + "}", value)
    one = "?gateway=store-gw&sensor=cr2-ctrl.air"
    queries = {
        "/api/history": "?sensor=cr2-ctrl.air",
        "/api/labels.pdf": "?batch=B-BEEF-0414",
        "/api/series": one,
        "/api/series.csv": one,
    }
    return path + queries.get(path, "")


@pytest.mark.e2e
def test_each_role_reaches_exactly_the_routes_it_should(api: Api) -> None:
    alarm_id = an_alarm(api)
    clients = {role: api.client(role) for role in Role}
    anonymous = api.client()
    try:
        for (method, template), least in ROUTES.items():
            path = route_path(template, alarm_id)
            if least is None:
                continue
            assert _call(anonymous, method, path) == 401, (method, path)
            for role, client in clients.items():
                code = _call(client, method, path)
                if role.may(least):
                    assert code not in (401, 403), (role, method, path, code)
                else:
                    assert code == 403, (role, method, path, code)
    finally:
        for client in (*clients.values(), anonymous):
            client.close()


@pytest.mark.e2e
def test_sign_in_failures_are_limited_and_a_right_password_does_not_skip_the_limit(
    api: Api,
) -> None:
    with api.client() as client:
        name = user_of(Role.OPERATOR)
        for _ in range(5):
            wrong = client.post("/api/auth/login", json={"username": name, "password": "nope"})
            assert wrong.status_code == 401
        limited = client.post("/api/auth/login", json={"username": name, "password": PASSWORD})
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) > 0
        other = client.post(
            "/api/auth/login", json={"username": user_of(Role.VIEWER), "password": PASSWORD}
        )
        assert other.status_code == 200  # the limit is per user name (and per address)
        assert "coldchain_session" in other.cookies


@pytest.mark.e2e
def test_an_alarm_that_cleared_by_itself_stays_open_until_someone_acknowledges_it(
    api: Api,
) -> None:
    alarm_id = an_alarm(api, ended=True)
    with api.client(Role.OPERATOR) as operator:
        (board,) = operator.get("/api/alarms").json()
        assert (board["id"], board["state"]) == (alarm_id, "cleared")
        done = operator.post(f"/api/alarms/{alarm_id}/ack", json={"comment": "door was open"})
        assert done.status_code == 200 and done.json()["state"] == "closed"
        assert operator.get("/api/alarms").json() == []
        (kept,) = operator.get("/api/alarms", params={"scope": "all"}).json()
        assert (kept["id"], kept["acknowledged_by"]) == (alarm_id, user_of(Role.OPERATOR))


@pytest.mark.e2e
def test_acknowledging_needs_a_comment_and_lands_in_the_audit_trail(api: Api) -> None:
    alarm_id = an_alarm(api)
    with api.client(Role.OPERATOR) as operator, api.client(Role.QUALITY) as quality:
        board = operator.get("/api/alarms").json()
        assert [a["id"] for a in board] == [alarm_id]
        # the chilled batches in cold room 2 during the breach, the truck's one included
        # (it was there until it was loaded)
        assert board[0]["batches"] == ["B-BEEF-0414", "B-CHK-0415", "B-SLM-0419"]
        blank = operator.post(f"/api/alarms/{alarm_id}/ack", json={"comment": "   "})
        assert blank.status_code == 422 and "comment" in blank.text
        done = operator.post(
            f"/api/alarms/{alarm_id}/ack", json={"comment": "door shut, compressor checked"}
        )
        assert done.status_code == 200
        assert done.json()["acknowledged_by"] == user_of(Role.OPERATOR)
        again = operator.post(f"/api/alarms/{alarm_id}/ack", json={"comment": "again"})
        assert again.status_code == 409
        trail = quality.get("/api/audit", params={"entity": "alarm"}).json()
        (ack,) = [t for t in trail if t["action"] == "alarm.acknowledge"]
        assert ack["actor"] == user_of(Role.OPERATOR)
        assert ack["new_value"]["comment"] == "door shut, compressor checked"
        assigned = operator.post(
            f"/api/alarms/{alarm_id}/assign", json={"assignee": user_of(Role.QUALITY)}
        )
        assert assigned.json()["assigned_to"] == user_of(Role.QUALITY)
        assert quality.get("/api/audit/verify").json()["intact"] is True


@pytest.mark.e2e
def test_a_driver_records_loading_and_delivery_with_the_temperature(api: Api) -> None:
    with api.client(Role.DRIVER) as driver:
        loaded = driver.post(
            "/api/batches/B-BEEF-0414/handover",
            json={"to_location": "truck-01.rear", "event": "loaded", "temp_c": 3.1},
        )
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["location_id"] == "truck-01.rear"
        nowhere = driver.post(
            "/api/batches/B-BEEF-0414/handover",
            json={"to_location": "moon", "event": "loaded"},
        )
        assert nowhere.status_code == 404
        delivered = driver.post(
            "/api/batches/B-BEEF-0414/handover",
            json={"to_location": None, "event": "delivered", "temp_c": 3.9},
        )
        journey = delivered.json()["journey"]
        assert [s["event"] for s in journey] == ["into_store", "loaded"]
        assert journey[-1]["until_ms"] is not None and delivered.json()["location_id"] is None
        assert journey[-1]["handed_over_by"] == user_of(Role.DRIVER)
        after = driver.post(
            "/api/batches/B-BEEF-0414/handover",
            json={"to_location": None, "event": "delivered"},
        )
        assert after.status_code == 409  # delivered: in nobody's custody


@pytest.mark.e2e
def test_history_report_and_csv_come_from_the_readings_store(api: Api) -> None:
    with api.client(Role.QUALITY) as quality:
        history = quality.get(
            "/api/history",
            params={"sensor": "cr2-ctrl.air", "from_ms": api.t0_ms, "to_ms": api.t0_ms + 60 * MIN},
        ).json()
        assert len(history) == 12 and history[0]["value"] == 2.0
        assert [r["ts_ms"] for r in history] == sorted(r["ts_ms"] for r in history)
        report = quality.get("/api/batches/B-BEEF-0414/report").json()
        assert report["batch_id"] == "B-BEEF-0414" and report["verdict"]["outcome"]
        csv_reply = quality.get("/api/batches/B-BEEF-0414/report.csv")
        assert csv_reply.headers["content-type"].startswith("text/csv")
        assert "B-BEEF-0414,cr2" in csv_reply.text and "# data sha256" in csv_reply.text
        assert "# audit trail head" in csv_reply.text and "(UTC+08:00)" in csv_reply.text


@pytest.mark.e2e
def test_the_public_trace_shows_public_fields_only(api: Api) -> None:
    with api.client(Role.VIEWER) as viewer:
        code = viewer.get("/api/batches/B-BEEF-0414").json()["trace_code"]
    with api.client() as public:
        reply = public.get(f"/api/trace/{code}")
        assert reply.status_code == 200
        body = reply.json()
        assert set(body) == {
            "trace_code",
            "product",
            "origin_producer",
            "origin_village",
            "origin_county",
            "journey",
            "cold_chain_held",
            "verdict",
            "mkt_c",
        }
        assert body["origin_producer"] == "Linxia halal beef cooperative"
        for private in ("warehouse.li", "B-BEEF-0414", "B-CHK-0415", "handed_over_by"):
            assert private not in reply.text
        assert public.get("/api/trace/ABCDEFGHJKLM").status_code == 404


@pytest.mark.e2e
def test_users_are_managed_by_admins_and_every_change_is_audited(api: Api) -> None:
    with api.client(Role.ADMIN) as admin:
        made = admin.post(
            "/api/users",
            json={"username": "driver.ma", "password": "long enough pw", "role": "driver"},
        )
        assert made.status_code == 201
        short = admin.post(
            "/api/users", json={"username": "x.y", "password": "short", "role": "viewer"}
        )
        assert short.status_code == 422
        promoted = admin.patch(
            "/api/users/driver.ma", json={"role": "operator", "reason": "shift lead now"}
        )
        assert promoted.json()["role"] == "operator"
        myself = admin.patch(
            f"/api/users/{user_of(Role.ADMIN)}", json={"active": False, "reason": "oops"}
        )
        assert myself.status_code == 409
        trail = admin.get("/api/audit", params={"entity": "user", "entity_id": "driver.ma"})
        actions = [t["action"] for t in trail.json()]
        assert actions == ["user.change", "user.create"]
        assert "long enough pw" not in trail.text
    signed_in = httpx.post(
        f"{api.url}/api/auth/login",
        json={"username": "driver.ma", "password": "long enough pw"},
        timeout=20,
    )
    assert signed_in.json()["role"] == "operator"


@pytest.mark.e2e
def _listen(
    api: Api, events: list[tuple[str, dict[str, object]]], ready: threading.Event, other: bool
) -> None:
    """Collect the live events of a viewer (``other``: of another site) until an alarm
    event, or until the stream ends."""
    with (
        api.client(Role.VIEWER, other=other) as viewer,
        viewer.stream("GET", "/api/live", timeout=30) as stream,
    ):
        name = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
                ready.set()
                if any(e[0] == "alarm" for e in events) or ("stop", {}) in events:
                    return


@pytest.mark.e2e
def test_live_stream_sends_new_readings_and_alarm_changes(api: Api) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    elsewhere: list[tuple[str, dict[str, object]]] = []  # a viewer of another site's
    ready, other_ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=_listen, args=(api, events, ready, False), daemon=True)
    other = threading.Thread(target=_listen, args=(api, elsewhere, other_ready, True), daemon=True)
    thread.start()
    other.start()
    assert ready.wait(10) and other_ready.wait(10), "no hello event"
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    publisher.connect("127.0.0.1", api.broker.port)
    publisher.loop_start()
    now = time.time_ns() // 1_000_000
    batch = ReadingsBatch(
        v=wire.SCHEMA_VERSION,
        gateway="store-gw",
        site="county-store",
        epoch=7,
        seq=1,
        readings=[Reading(sensor="cr2-ctrl.air", ts_ms=now, q=Quality.OK, temp_c=3.3)],
    )
    theirs = ReadingsBatch(
        v=wire.SCHEMA_VERSION,
        gateway="ts-gw",
        site=OTHER_SITE,
        epoch=7,
        seq=1,
        readings=[Reading(sensor="ts-probe.temp", ts_ms=now, q=Quality.OK, temp_c=-20.0)],
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (
        any(e[0] == "reading" for e in events) and any(e[0] == "reading" for e in elsewhere)
    ):
        publisher.publish(
            wire.topic("county-store", "store-gw", Stream.READINGS), wire.encode(batch), qos=1
        ).wait_for_publish(5)
        publisher.publish(
            wire.topic(OTHER_SITE, "ts-gw", Stream.READINGS), wire.encode(theirs), qos=1
        ).wait_for_publish(5)
        time.sleep(0.3)
    publisher.disconnect()
    publisher.loop_stop()
    reading = next(e[1] for e in events if e[0] == "reading")
    # the value shown is calibrated, as in the reports, and says by how much
    with Session(api.engine) as s:
        correction = calibration_at(s, "store-gw", "cr2-ctrl.air", now).correction_c
    assert correction != 0.0  # the county calibrates this probe: the check means something
    assert (reading["sensor"], reading["raw_value"], reading["correction_c"]) == (
        "cr2-ctrl.air",
        3.3,
        correction,
    )
    assert reading["value"] == round(3.3 + correction, 3)
    alarm_id = an_alarm(api)
    thread.join(10)
    alarm = next(e[1] for e in events if e[0] == "alarm")
    assert (alarm["id"], alarm["state"], alarm["new"]) == (alarm_id, "active", True)
    # the viewer of the transfer station saw its own reading, and nothing of cold room 2
    time.sleep(1.0)  # the alarm event went to every client at once: time to take it
    elsewhere.append(("stop", {}))
    assert {e[1].get("sensor") for e in elsewhere if e[0] == "reading"} == {"ts-probe.temp"}
    assert not [e for e in elsewhere if e[0] == "alarm"], elsewhere
    with api.client(Role.VIEWER) as viewer:
        sites = {s["id"]: s for s in viewer.get("/api/sites").json()}
        cr2 = next(loc for loc in sites["county-store"]["locations"] if loc["id"] == "cr2")
        assert cr2["state"] == "alarm" and cr2["open_alarms"] == 1
        (shown,) = [r for r in cr2["readings"] if r["sensor"] == "cr2-ctrl.air"]
        assert (shown["value"], shown["raw_value"]) == (round(3.3 + correction, 3), 3.3)


@pytest.mark.e2e
def test_first_admin_comes_from_the_cli_and_there_is_no_default_user(
    db_url: str, tmp_path: object
) -> None:
    env = {**os.environ, "COLDCHAIN_DB_URL": db_url, "FIRST_ADMIN_PW": "a strong passphrase"}
    base = [sys.executable, "-m", "ops.cli", "users"]
    listed = subprocess.run([*base, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode != 0 or listed.stdout.strip() == ""
    made = subprocess.run(
        [*base, "add", "li.admin", "--role", "admin", "--password-env", "FIRST_ADMIN_PW"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    listed = subprocess.run([*base, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.stdout.split()[:3] == ["li.admin", "admin", "active"]
    refused = subprocess.run(
        [sys.executable, "-m", "ops.cli", "api", "--port", "1"],
        env={k: v for k, v in os.environ.items() if k != "COLDCHAIN_DB_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "COLDCHAIN_DB_URL" in refused.stderr


@pytest.mark.e2e
# on PostgreSQL, the production database (the SQLite path answers the same routes and
# is walked by every other API test); one fuzz run keeps the suite's time in bounds
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.timeout(480)  # the slowest test: a few hundred requests, argon2 on each sign-in
def test_schemathesis_finds_no_server_error(api: Api, tmp_path: object) -> None:
    token = api.token(Role.ADMIN)
    result = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "schemathesis"),
            "run",
            f"{api.url}/api/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            "--header",
            f"Authorization: Bearer {token}",
            "--exclude-path",
            "/api/live",
            "--exclude-path",
            "/api/auth/logout",
            "--request-timeout",
            "20",
            "--generation-deterministic",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


@pytest.mark.e2e
def test_escalation_policies_are_shown_as_the_alert_service_runs_them(api: Api) -> None:
    with api.client(Role.VIEWER) as viewer:
        policies = viewer.get("/api/policies").json()
    assert policies["configured"] is True
    assert [s["notify"] for s in policies["default"]["steps"]] == [
        ["duty-operator"],
        ["shift-lead"],
    ]
    assert policies["default"]["quiet_start"] == "22:00"
    assert policies["sites"]["county-fleet"]["steps"][0]["notify"] == ["fleet-dispatcher"]


def test_health_reports_the_services_heartbeats_and_a_silent_one_as_silent(api: Api) -> None:
    from coldchain.heartbeat import ServiceBeat, beat_topic, encode_beat
    from tests.test_consumer import publish

    now = time.time_ns() // 1_000_000
    degraded = ServiceBeat(1, "collector", "c-health", "degraded", now, ["store: disk full"], {})
    publish(api.broker.port, beat_topic("collector", "c-health"), encode_beat(degraded))

    def services() -> dict[str, dict[str, object]]:
        body = api.client().get("/api/health").json()
        return {s["service"]: s for s in body["services"]}

    wait_for(lambda: "collector/c-health" in services(), 10, "the heartbeat reported")
    reply = api.client().get("/api/health")
    assert reply.status_code == 200 and reply.json()["live"]["state"] == "ok"
    seen = services()["collector/c-health"]
    assert seen["state"] == "degraded" and seen["reasons"] == ["store: disk full"]


def test_the_live_board_believes_the_topic_not_the_payload_and_survives_absurd_stamps(
    api: Api,
) -> None:
    from tests.test_consumer import publish

    now = time.time_ns() // 1_000_000
    topic = wire.topic("county-store", "store-gw", Stream.READINGS)

    def batch(ts_ms: int, value: float, gateway: str = "store-gw", seq: int = 1) -> bytes:
        reading = Reading(sensor="cr2-ctrl.air", ts_ms=ts_ms, q=Quality.OK, temp_c=value)
        return wire.encode(
            ReadingsBatch(
                v=1, gateway=gateway, site="county-store", epoch=9, seq=seq, readings=[reading]
            )
        )

    def latest() -> object:
        with api.client(Role.VIEWER) as viewer:
            reply = viewer.get("/api/sites")
            assert reply.status_code == 200, reply.text
            cr2 = next(
                loc
                for loc in {s["id"]: s for s in reply.json()}["county-store"]["locations"]
                if loc["id"] == "cr2"
            )
            return next(  # as published (``value`` has the calibration applied)
                (r["raw_value"] for r in cr2["readings"] if r["sensor"] == "cr2-ctrl.air"), None
            )

    publish(api.broker.port, topic, batch(now, 2.5))
    wait_for(lambda: latest() == 2.5, 10, "the real reading on the board")
    # a reading a day ahead (a gateway clock ahead: shown marked clock_suspect until a
    # reading from a right clock comes), another gateway's account naming this one, a
    # stamp of 10^400
    publish(api.broker.port, topic, batch(now + 86_400_000, 99.0, seq=2))
    wait_for(lambda: latest() == 99.0, 10, "the clock-suspect reading on the board")
    publish(
        api.broker.port,
        wire.topic("county-store", "intruder-gw", Stream.READINGS),
        batch(now + 1, 50.0, seq=3),
    )
    publish(
        api.broker.port,
        topic,
        batch(now, 1.0, seq=4).replace(str(now).encode(), b"1" + b"0" * 400),
    )
    publish(api.broker.port, topic, batch(now + 2, 2.75, seq=5))
    wait_for(lambda: latest() == 2.75, 10, "the next real reading on the board")
    hub = api.app.state.services.hub
    assert hub.counters.refused >= 2
    from coldchain.health import serve

    server = serve(lambda: [hub.health], hub.metrics, "127.0.0.1", 0)  # COLDCHAIN_HEALTH_PORT
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        scraped = httpx.get(f"{base}/metrics", timeout=5).text
        assert f"coldchain_api_live_refused_total {float(hub.counters.refused)}" in scraped
        for name in ("coldchain_api_live_readings_total", "coldchain_api_live_clients"):
            assert name in scraped, name
        assert httpx.get(f"{base}/health", timeout=5).json()["ok"] is True
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.e2e
def test_a_one_time_password_lets_its_user_do_nothing_but_choose_their_own(api: Api) -> None:
    with api.client(Role.ADMIN) as admin:
        made = admin.post("/api/users", json={"username": "li.new", "role": "operator"}).json()
    one_time = made["password"]
    with api.client() as li:
        signed = li.post("/api/auth/login", json={"username": "li.new", "password": one_time})
        assert signed.json()["must_change_password"] is True
        blocked = li.get("/api/sites")
        assert blocked.status_code == 403 and "choose your own password" in blocked.text
        assert li.get("/api/auth/me").json()["must_change_password"] is True
        wrong = li.post(
            "/api/auth/password",
            json={"current_password": "not it at all", "new_password": "yak butter tea 42"},
        )
        assert wrong.status_code == 400
        same = li.post(
            "/api/auth/password", json={"current_password": one_time, "new_password": one_time}
        )
        assert same.status_code == 400
        done = li.post(
            "/api/auth/password",
            json={"current_password": one_time, "new_password": "yak butter tea 42"},
        )
        assert done.status_code == 204, done.text
        assert li.get("/api/sites").status_code == 401  # their sessions ended: sign in again
        again = li.post(
            "/api/auth/login", json={"username": "li.new", "password": "yak butter tea 42"}
        )
        assert again.json()["must_change_password"] is False
        assert li.get("/api/sites").status_code == 200
    with api.client(Role.ADMIN) as admin:  # a reset is a one-time password again
        reset = admin.post("/api/users/li.new/password").json()["password"]
    with api.client() as li:
        li.post("/api/auth/login", json={"username": "li.new", "password": reset})
        assert li.get("/api/sites").status_code == 403
