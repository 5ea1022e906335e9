"""The cab's alarms with no signal, end to end (issue 17): a real alert service sends
the truck's gateway its compartments' limits over a real Mosquitto; the gateway keeps
them; the signal goes (broker and alert service stopped); the compartment warms past
its critical limit; the cab page in Debian's Chromium, served by the gateway itself,
turns red with a banner that says what and since when."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from alerts.db import make_engine, transaction, upgrade
from alerts.models import Gateway
from alerts.service import AlertService
from coldchain.settings import MqttConfig
from coldchain.wire_limits import decode_limits
from simulator.devices import ModbusServer, ModbusUnit
from tests.browser import shoot
from tests.harness import Broker, GatewayProcess, LoopThread, Recorder, free_port, wait_for
from tests.test_alerts_service import GW, seed

#: the demo's speed-up: the frozen profile's 15-minute critical delay takes 7.5 s
TIME_SCALE = 120.0


def gateway_config(tmp_path: Path, broker_port: int, modbus_port: int, cab_port: int) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[gateway]
id = "{GW}"
site = "store"
[mqtt]
host = "127.0.0.1"
port = {broker_port}
[outbox]
path = "outbox.sqlite"
confirm = "broker"
[cab]
port = {cab_port}
labels = {{ "cr1-ctrl" = "Front (frozen)" }}
[[buses]]
kind = "modbus_tcp"
name = "reefer"
host = "127.0.0.1"
port = {modbus_port}
interval_s = 0.5
[[buses.devices]]
id = "cr1-ctrl"
profile = "reefer_controller"
""")
    return config


def test_the_cab_turns_red_with_no_signal_by_the_limits_the_alert_service_sent(
    tmp_path: Path, page: Page
) -> None:
    broker = Broker(tmp_path / "broker")
    broker.start()
    url = f"sqlite:///{tmp_path / 'alerts.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    seed(engine)  # store.room: frozen-meat; cr1-ctrl.air and .door measure it
    with transaction(engine) as s:
        s.add(Gateway(id=GW, site_id="store", name="Store gateway"))
    service = AlertService(
        engine,
        MqttConfig(host="127.0.0.1", port=broker.port),
        client_id="alerts-cab",
        time_scale=TIME_SCALE,
        on_alarm=lambda _line: None,
    )
    values: dict[str, float | bool] = {"air": -19.5, "evap": -25.0, "setpoint": -20.0,
                                       "door": False, "compressor": True}  # fmt: skip
    loop, modbus_port, cab_port = LoopThread(), free_port(), free_port()
    server: ModbusServer | None = None
    gateway = GatewayProcess(
        gateway_config(tmp_path, broker.port, modbus_port, cab_port), tmp_path / "gateway.log"
    )
    cab = f"http://127.0.0.1:{cab_port}/"

    async def serve() -> ModbusServer:
        made = ModbusServer(
            [ModbusUnit(1, "reefer_controller", lambda: values)], tcp_port=modbus_port
        )
        await made.start()
        return made

    def front() -> dict[str, object]:
        try:
            latest = httpx.get(f"{cab}latest.json", timeout=2).json()
        except httpx.TransportError:
            return {}
        found = [c for c in latest["compartments"] if c["device"] == "cr1-ctrl"]
        return {"limits_ms": latest["limits_ms"], **(found[0] if found else {})}

    recorder = Recorder(broker.port, f"coldchain/v1/store/{GW}/limits", "cab-e2e")
    try:
        service.start()
        wait_for(lambda: recorder.messages, 30, "the alert service's limits for the gateway")
        sent = decode_limits(recorder.messages[-1].payload)
        assert {s.sensor for s in sent.sensors} >= {"cr1-ctrl.air", "cr1-ctrl.door"}
        server = loop.run(serve())
        gateway.start()
        wait_for(lambda: front().get("limits_ms") is not None, 60, "the cab's limits")
        assert (tmp_path / "outbox.limits.json").exists()  # kept for a start in a dead zone
        page.goto(cab)
        section = page.locator('section[data-device="cr1-ctrl"]')
        expect(section.locator(".limits")).to_have_text("≤ -18.0 °C")
        expect(section).to_have_attribute("data-state", "ok")
        page.click("#sound")  # the driver turns the alarm sound on (a tap: browsers ask one)
        expect(page.locator("#sound")).to_have_attribute("aria-pressed", "true")

        service.stop()  # the truck drives out of coverage
        broker.stop()
        expect(page.locator("#uplink")).to_have_class("down", timeout=30_000)
        values["air"] = -12.0  # the reefer fails: past the critical limit (-15 °C)
        loop.run(server.refresh())
        expect(section).to_have_attribute("data-state", "outside", timeout=10_000)
        expect(section).to_have_attribute("data-state", "critical", timeout=30_000)
        banner = page.locator("#banner")
        expect(banner).to_be_visible()
        expect(banner).to_have_class("critical")
        expect(banner).to_contain_text("CRITICAL: Front (frozen) · too warm · since")
        expect(page.locator("body")).to_have_attribute("data-alarm", "critical")
        shoot(page, "gateway-cab-critical-no-signal")
        values["air"] = -19.5  # repaired: back inside for the clear delay
        loop.run(server.refresh())
        expect(section).to_have_attribute("data-state", "ok", timeout=30_000)
        expect(banner).to_be_hidden()
    finally:
        recorder.close()
        gateway.stop()
        service.stop()
        if server is not None:
            loop.run(server.stop())
        loop.close()
        broker.stop()
        engine.dispose()
        time.sleep(0)
