"""The simulated county: thermal model, routes, NMEA, and the commands that run it."""

from __future__ import annotations

import itertools
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.nmea import check_nmea_checksum
from simulator.county import County
from simulator.route import Position, haversine_km, nmea_sentences
from simulator.thermal import Space
from tests.harness import Broker, Recorder, wait_for


def run_for(space: Space, minutes: float) -> list[tuple[float, bool]]:
    trace = []
    for _ in range(int(minutes * 4)):
        space.step(0.25)
        trace.append((space.temp_c, space.compressor_on))
    return trace


def test_thermostat_cycles_the_compressor_around_the_setpoint() -> None:
    room = Space("frozen", setpoint_c=-20.0, temp_c=-20.0, defrost_every_min=10_000)
    trace = run_for(room, 240)[120:]  # after the first half hour
    temps = [t for t, _ in trace]
    starts = sum(1 for (_, a), (_, b) in itertools.pairwise(trace) if b and not a)
    assert min(temps) > -21.5 and max(temps) < -18.5
    assert starts >= 3


def test_open_door_warms_the_room_and_a_failed_compressor_lets_it_drift_to_ambient() -> None:
    room = Space("chilled", setpoint_c=2.0, temp_c=2.0, cooling_c_per_min=0.5)
    run_for(room, 60)
    room.door_open = True
    run_for(room, 20)
    assert room.temp_c > 4.0
    room.door_open = False
    room.compressor_failed = True
    run_for(room, 600)
    assert room.temp_c > 15.0
    assert not room.compressor_on


def test_defrost_stops_the_compressor_on_schedule() -> None:
    room = Space("frozen", setpoint_c=-20.0, temp_c=-20.0, defrost_every_min=60, defrost_for_min=10)
    seen_defrost = False
    for _ in range(4 * 130):
        room.step(0.25)
        if room.defrost_on:
            seen_defrost = True
            assert not room.compressor_on
    assert seen_defrost


def test_truck_routes_are_village_loops_of_85_to_140_km() -> None:
    county = County(workdir=Path("/nonexistent"))
    for route in county.routes.values():
        assert 85 <= route.length_km <= 140, (route.name, route.length_km)
        assert route.stops[0] == route.stops[-1]
        assert 200 <= route.period_min <= 360
        start, end = route.at(0), route.at(route.period_min - 0.01)
        assert haversine_km((start.lat_deg, start.lon_deg), (end.lat_deg, end.lon_deg)) < 1


@given(
    lat=st.floats(-89.9, 89.9),
    lon=st.floats(-179.9, 179.9),
    speed=st.floats(0, 120),
    course=st.floats(0, 359.9),
)
def test_generated_nmea_sentences_carry_valid_checksums(lat, lon, speed, course) -> None:
    for sentence in nmea_sentences(Position(lat, lon, speed, course, None)):
        assert sentence.endswith(b"\r\n")
        assert check_nmea_checksum(sentence.rstrip(b"\r\n"))


def test_simulate_command_prints_every_device_address_and_writes_gateway_configs(
    tmp_path: Path,
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "simulate",
            "--workdir",
            str(tmp_path),
            "--duration-s",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not any("ts-gw.toml" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "simulate ended early: " + "".join(lines)
            lines.append(line)
        out = "".join(lines)
        assert len(re.findall(r"modbus tcp 127\.0\.0\.1:\d+", out)) == 5
        assert len(re.findall(r"modbus rtu \S+\.tty", out)) == 3
        assert len(re.findall(r"serial \S+\.tty", out)) == 4
        assert "uplink truck-01" in out and "uplink truck-02" in out
        configs = sorted(p.name for p in (tmp_path / "gateways").iterdir())
        assert configs == ["store-gw.toml", "truck-01.toml", "truck-02.toml", "ts-gw.toml"]
        check = subprocess.run(
            [
                sys.executable,
                "-m",
                "ops.cli",
                "gateway",
                "check",
                str(tmp_path / "gateways" / "store-gw.toml"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stderr
        # an outside Modbus client reads a simulated device
        port = int(re.search(r"modbus tcp 127\.0\.0\.1:(\d+)", out).group(1))  # type: ignore[union-attr]
        from pymodbus.client import ModbusTcpClient

        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
        assert client.connect()
        rr = client.read_holding_registers(0, count=1, device_id=1)
        client.close()
        assert not rr.isError()
        assert rr.registers[0] == (-200) & 0xFFFF  # cold room 1 setpoint -20.0 °C
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)


@pytest.mark.e2e
def test_run_command_on_embedded_defaults_stores_readings_within_a_minute(
    tmp_path: Path,
) -> None:
    """What the README's run command starts: its own Mosquitto, the county, the gateways
    and the collector into SQLite; then `coldchain export` gives the readings back."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "demo",
            "--workdir",
            str(tmp_path),
            "--interval-s",
            "2",
            "--duration-s",
            "30",
            "--web-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    first_stored = None
    lines = []
    pages: dict[str, int] = {}
    logins: dict[str, str] = {}
    try:
        for line in proc.stdout:
            lines.append(line)
            match = re.search(r"stored (\d+)", line)
            if first_stored is None and match and int(match.group(1)) > 0:
                first_stored = time.monotonic() - started
            login = re.match(r"\s+(demo\.(?:operator|quality))\s+(\S+)$", line)
            if login:
                logins[login.group(1)] = login.group(2)
            web = re.search(r"web\s+(http://127\.0\.0\.1:\d+)/board", "".join(lines))
            if len(logins) == 2 and web and not pages:
                pages.update(_demo_pages(web.group(1), logins))
        proc.wait(60)
    finally:
        stop_process_if_running(proc)
    out = "".join(lines)
    assert proc.returncode == 0, out[-3000:]
    assert "broker     mqtt://127.0.0.1:" in out and "(started by the demo)" in out
    # the run command serves the pages, with a demo sign-in per role printed at start
    assert pages == {
        "/board": 200,
        "/wall": 200,
        "/cab/truck-01": 200,
        "/batches": 200,
        "/batches/B-YAK-0418": 200,
        "history": 1,
    }, (pages, out[-1500:])
    assert all(
        f"demo.{role}" in out for role in ("admin", "quality", "operator", "driver", "viewer")
    )
    assert first_stored is not None and first_stored < 60, out[-3000:]
    final = re.search(r"final: readings taken (\d+)\s+published (\d+)\s+stored (\d+)", out)
    assert final is not None, out[-3000:]
    taken, published, stored = map(int, final.groups())
    assert taken > 0
    assert taken == published == stored, out[-3000:]

    db = tmp_path / "coldchain.sqlite"
    con = sqlite3.connect(db)
    sensors = {s for (s,) in con.execute("SELECT DISTINCT sensor FROM readings")}
    con.close()
    # one sensor of each kind of bus: Modbus TCP, RTU, ASCII probes, GPS
    assert {
        "cr1-ctrl.air",
        "cr1-th.temp",
        "ct-probe.temp",
        "truck-01-gps.pos",
        "truck-02-rear.door",
        "ts-probe.temp",
    } <= sensors
    export = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "export",
            "--db",
            str(db),
            "--site",
            "county-store",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert export.returncode == 0, export.stderr
    rows = export.stdout.splitlines()
    assert rows[0].startswith("time_utc,ts_ms,site,gateway,sensor,quantity,value,q")
    assert len(rows) > 20
    assert all(",county-store,store-gw," in row for row in rows[1:])
    assert f"{len(rows) - 1} readings exported" in export.stderr


def _demo_pages(url: str, logins: dict[str, str]) -> dict[str, int]:
    """Sign in as the printed demo users; the pages answer, and a truck's batch has hours
    of history over two stays (cold room, then the truck)."""
    out = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        signed_in = client.post(
            "/api/auth/login",
            json={"username": "demo.operator", "password": logins["demo.operator"]},
        )
        assert signed_in.status_code == 200, signed_in.text
        for path in ("/board", "/wall", "/cab/truck-01", "/batches"):
            out[path] = client.get(path).status_code
    with httpx.Client(base_url=url, timeout=30) as client:
        client.post(
            "/api/auth/login",
            json={"username": "demo.quality", "password": logins["demo.quality"]},
        )
        out["/batches/B-YAK-0418"] = client.get("/batches/B-YAK-0418").status_code
        report = client.get("/api/batches/B-YAK-0418/report").json()
        stays = report["stays"]
        out["history"] = int(len(stays) == 2 and len(stays[0]["points"]) > 30)
    return out


@pytest.mark.e2e
def test_demo_uses_an_existing_broker_when_given_one(
    tmp_path: Path, running_broker: Broker, unique: str
) -> None:
    recorder = Recorder(running_broker.port, "coldchain/v1/+/store-gw/readings", f"demo-{unique}")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "demo",
            "--workdir",
            str(tmp_path),
            "--mqtt-url",
            f"mqtt://127.0.0.1:{running_broker.port}",
            "--interval-s",
            "1",
            "--duration-s",
            "60",
            "--web-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: len(recorder.batches()) >= 3, 45, "readings at our broker")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        recorder.close()
    assert proc.returncode == 0, out
    assert f"mqtt://127.0.0.1:{running_broker.port} (external)" in out


def stop_process_if_running(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def test_truck_uplink_relay_drops_and_restores_the_connection(
    loop_thread, running_broker: Broker
) -> None:
    from simulator.link import Uplink

    async def start() -> Uplink:
        link = Uplink("t", "127.0.0.1", running_broker.port)
        await link.start()
        return link

    link = loop_thread.run(start())
    import socket

    with socket.create_connection(("127.0.0.1", link.listen_port), 2) as s:
        s.sendall(bytes([0xC0, 0x00]))  # MQTT PINGREQ without CONNECT: the broker closes
        time.sleep(0.2)
    loop_thread.loop.call_soon_threadsafe(link.down)
    time.sleep(0.2)
    with socket.create_connection(("127.0.0.1", link.listen_port), 2) as s:
        s.settimeout(2)
        assert s.recv(10) == b""  # no signal: closed at once
    loop_thread.loop.call_soon_threadsafe(link.up)
    loop_thread.run(link.stop())


def test_scripted_events_break_the_chain_and_end(loop_thread) -> None:
    from simulator.county import DEFAULT_SCRIPT
    from simulator.link import Uplink

    county = County(workdir=Path("/nonexistent"))
    county.uplinks["truck-02"] = Uplink("truck-02", "127.0.0.1", 1)
    by_what = {e.what: e for e in DEFAULT_SCRIPT}
    assert set(by_what) == {"door_open", "compressor_failure", "signal_loss"}

    def at(minute: float) -> None:
        county.sim_min = minute
        county._apply_script()

    door, comp, signal_loss = (
        by_what["door_open"],
        by_what["compressor_failure"],
        by_what["signal_loss"],
    )
    at(door.at_min + 1)
    assert county.spaces[door.target].door_open
    at(comp.at_min + 1)
    assert county.spaces[comp.target].compressor_failed
    assert not county.spaces[door.target].door_open  # the door event has ended by then
    at(signal_loss.at_min + 1)
    assert not county.uplinks["truck-02"].is_up
    at(max(e.at_min + e.for_min for e in DEFAULT_SCRIPT) + 1)
    assert county.uplinks["truck-02"].is_up
    assert not county.spaces[comp.target].compressor_failed


def test_failed_compressor_in_the_frozen_room_warms_it_past_the_frozen_limit() -> None:
    county = County(workdir=Path("/nonexistent"))
    room = county.spaces["cr1"]
    room.compressor_failed = True
    room.step(120)  # two simulated hours
    assert room.temp_c > -15.0  # DOMAIN.md: critical for frozen meat


@pytest.mark.e2e
def test_demo_scripted_events_raise_breaches_on_the_right_batches(tmp_path: Path) -> None:
    """Door left open in cold room 2, compressor failure in cold room 1, truck 02 losing
    signal: the alarms name the rooms (or the gateway) and the batches in them, as they
    happen."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "demo",
            "--workdir",
            str(tmp_path),
            "--accel",
            "600",
            "--interval-s",
            "1",
            "--duration-s",
            "30",
            "--web-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    alarms = [line for line in result.stdout.splitlines() if " ALARM " in line]
    cr1 = [a for a in alarms if "Cold room 1" in a and "critical high" in a]
    cr2 = [a for a in alarms if "Cold room 2" in a and "critical high" in a]
    assert cr1 and all("B-YAK-0412" in a and "B-MUT-0413" in a for a in cr1), alarms
    assert cr2 and all("B-BEEF-0414" in a and "B-CHK-0415" in a for a in cr2), alarms
    assert not any("Cold room 1" in a and "B-BEEF-0414" in a for a in alarms)
    con = sqlite3.connect(tmp_path / "alerts.sqlite")
    rows = con.execute(
        "SELECT location_id, kind, level, batches, end_reason FROM breaches"
    ).fetchall()
    con.close()
    assert ("cr1", "high", "critical") in {(r[0], r[1], r[2]) for r in rows}
    # the door left open in cold room 2 is a door breach on the batches in it
    assert [r[3] for r in rows if r[0] == "cr2" and r[1] == "door_open"] == [
        '["B-BEEF-0414", "B-CHK-0415"]'
    ]
    # truck 02 losing signal: its gateway's last will is an offline breach on its batch
    offline = [a for a in alarms if "gateway_offline" in a and "truck-02" in a]
    assert offline and all("B-SLM-0419" in a for a in offline), alarms
    # truck 02's buffered readings came back after its signal loss: judged on edge time,
    # they leave no gap, so no no-data breach
    assert not any(r[1] == "no_data" and r[0].startswith("truck-02") for r in rows)
    # one alarm per breach: the live stream and any re-evaluation never doubled one
    assert len(alarms) == len(rows)
    # ending the run stops every gateway on purpose: no other gateway is called offline
    con = sqlite3.connect(tmp_path / "alerts.sqlite")
    offline_gateways = {
        g for (g,) in con.execute("SELECT gateway FROM breaches WHERE kind = 'gateway_offline'")
    }
    con.close()
    assert offline_gateways == {"truck-02"}, offline_gateways
