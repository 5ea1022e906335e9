"""The pages in Debian's Chromium (Playwright pointed at the Debian binary; no browser is
ever downloaded), against the real app, database, readings store and broker.
Screenshots of each page in both languages go to artifacts/screenshots/."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlparse

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session

from alerts.announce import alarm_line
from alerts.calibration import calibration_at
from alerts.db import transaction
from alerts.gateways import GatewayRule, Gateways
from alerts.repo import sync_alarm, upsert_breach
from alerts.repo.users import Role
from api import pages_alarm, pages_batch, pages_custody, pages_history, pages_setup
from api.pages import PUBLIC_PAGES, router
from coldchain import wire
from coldchain.judging.breach import Kind, Level
from coldchain.wire import Quality, Reading, Stream
from simulator.broker import free_port
from tests.api_server import PASSWORD, Api, an_alarm, user_of
from tests.browser import publish, publish_status, shoot, sign_in
from tests.harness import Broker
from tests.scenario import Setup
from tests.test_history import drag_zoom, shown

pytestmark = pytest.mark.e2e


def test_every_page_but_the_public_ones_needs_a_sign_in(web: Api) -> None:
    fill = {
        "{gateway}": "truck-01",
        "{batch_id}": "B-BEEF-0414",
        "{code}": "ABCDEFGHJKLM",
        "{alarm_id}": "1",
        "{location_id}": "cr1",
    }
    routers = (
        router,
        pages_alarm.router,
        pages_batch.router,
        pages_custody.router,
        pages_history.router,
    )
    with httpx.Client(base_url=web.url, follow_redirects=False, timeout=20) as anonymous:
        for route in [r for rt in (*routers, pages_setup.router) for r in rt.routes]:
            path = getattr(route, "path", "")
            if path in PUBLIC_PAGES:
                continue
            for key, value in fill.items():
                path = path.replace(key, value)
            reply = anonymous.get(path)
            assert reply.status_code == 303, path
            assert reply.headers["location"].startswith("/login?next="), path


def test_an_operator_sees_an_alarm_arrive_live_acknowledges_it_and_quality_sees_the_comment(
    web: Api, page: Page, browser: Browser
) -> None:
    sign_in(page, web, Role.OPERATOR)
    expect(page.locator("#alarms .empty")).to_be_visible()
    expect(page.locator("body[data-live=connected]")).to_be_attached()
    alarm_id = an_alarm(web)  # what the alert service does when cold room 2 warms up
    item = page.locator(f'#alarms li[data-alarm="{alarm_id}"]')
    expect(item).to_be_visible(timeout=15_000)
    expect(page.locator("#critical-banner")).to_be_visible()
    expect(page.locator("#critical-banner")).to_contain_text("Cold room 2")
    assert page.title().startswith("(!) ")
    shoot(page, "board-en-new-critical")
    item.locator("button[type=submit]").click()  # no comment: refused, said so
    expect(item.locator(".error")).to_have_text("Write what was done")
    item.locator("input[name=comment]").fill("Door closed, compressor reset by Zhang")
    item.locator("button[type=submit]").click()
    expect(item).to_contain_text(f"Acknowledged by {user_of(Role.OPERATOR)}")
    expect(item).to_contain_text("Door closed, compressor reset by Zhang")
    shoot(page, "board-en-acknowledged")
    page.goto(f"{web.url}/board?lang=zh")
    expect(page.locator("h1")).to_contain_text("未结束报警")
    # places by their Chinese names, from the county file, on the alarm and the room
    expect(item.locator("strong")).to_have_text("2号冷库（冷藏）")
    expect(page.locator("#loc-cr2 .name")).to_have_text("2号冷库（冷藏）")
    page.evaluate("refreshAlarms()")  # the same when the script draws it from the API
    expect(item.locator("strong")).to_have_text("2号冷库（冷藏）")
    shoot(page, "board-zh")

    quality = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    try:
        sign_in(quality, web, Role.QUALITY, then="/batches/B-BEEF-0414")
        expect(quality.locator("#batch-alarms")).to_contain_text(
            "Door closed, compressor reset by Zhang"
        )
        expect(quality.locator("#batch-alarms")).to_contain_text(user_of(Role.OPERATOR))
        # the journey's interactive chart: each stay's probes over the stay's window
        chart = quality.locator("#chart")
        expect(chart).to_have_attribute("data-loading", "false")
        labels = quality.evaluate("document.getElementById('chart').chart.getLabels()")
        assert any("cr2-ctrl.air" in label for label in labels), labels
        expect(quality.locator("#chart-csv a")).not_to_have_count(0)
        quality.click('#chart-range [data-preset="3600000"]')  # the batch's last hour
        expect(chart).to_have_attribute("data-bucket-ms", "0")
        assert abs(shown(quality) - 3_600_000) < 60_000
        quality.click('#chart-range [data-preset="86400000"]')
        drag_zoom(quality)  # a tenth of the day: about two hours and a half
        quality.wait_for_function("document.getElementById('chart').dataset.loading === 'false'")
        assert shown(quality) < 4 * 3_600_000
        expect(quality.locator("figure.chart svg")).to_be_attached()  # the PDF's static one
        shoot(quality, "batch-audit-en")
        quality.goto(f"{web.url}/batches/B-BEEF-0414?lang=zh")
        expect(quality.locator(".verdict")).to_contain_text("结论")
        shoot(quality, "batch-audit-zh")
    finally:
        quality.context.close()


def test_an_alarm_that_cleared_by_itself_stays_on_the_board_until_acknowledged(
    web: Api, page: Page
) -> None:
    alarm_id = an_alarm(web, ended=True)  # 14.5 °C for 25 minutes, back by itself
    sign_in(page, web, Role.OPERATOR)
    item = page.locator(f'#alarms li[data-alarm="{alarm_id}"]')
    expect(item).to_have_class(re.compile(r"\bstate-cleared\b"))
    expect(item.locator(".state")).to_have_text("Cleared, not acknowledged")
    page.reload()  # not a live-update artefact: the board's own list keeps it
    expect(item).to_be_visible()
    shoot(page, "board-en-cleared-unacknowledged")
    item.locator("input[name=comment]").fill("Door left open during loading; product checked")
    item.locator("button[type=submit]").click()
    expect(item).to_have_count(0)  # answered: closed, off the board
    expect(page.locator("#alarms .empty")).to_be_visible()


def test_the_board_shows_a_gateway_back_filling_and_one_whose_data_is_not_confirmed(
    web: Api, page: Page
) -> None:
    """DOMAIN.md's status "back-fill in progress": a gateway back online with buffered
    readings still draining says so until its outbox is empty; a gateway whose published
    data no store has confirmed for minutes says that (its heartbeat's figures)."""
    sign_in(page, web, Role.OPERATOR)
    badge = page.locator('.gateway[data-gateway="truck-02"]')
    expect(badge).to_be_attached()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.connect("127.0.0.1", web.broker.port)
    client.loop_start()
    try:
        for stats, text in (
            ({"backlog": 420, "behind": 400}, "Back-filling"),
            ({"backlog": 60, "unconfirmed": 12, "oldest_unconfirmed_age_s": 900}, "Not confirmed"),
            ({"backlog": 0, "oldest_unconfirmed_age_s": 200, "confirm_timeout_s": 120}, "Online"),
            (
                {"backlog": 9, "oldest_unconfirmed_age_s": 200, "confirm_timeout_s": 60},
                "Not confirmed",
            ),
            ({"backlog": 0}, "Online"),
        ):
            status = wire.Status(
                v=wire.SCHEMA_VERSION,
                gateway="truck-02",
                site="county-fleet",
                state="online",
                ts_ms=time.time_ns() // 1_000_000,
                stats=stats,
            )
            # sent again every second, as a gateway's heartbeat is: the API's live hub
            # may still be subscribing when the first one goes out
            for attempt in range(15):
                client.publish(
                    wire.topic("county-fleet", "truck-02", Stream.STATUS),
                    wire.encode(status),
                    qos=1,
                ).wait_for_publish(5)
                try:
                    expect(badge).to_contain_text(f"truck-02: {text}", timeout=1_000)
                    break
                except AssertionError:
                    if attempt == 14:
                        raise
            if stats["backlog"]:
                shoot(page, f"board-en-{text.lower().replace(' ', '-')}")
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_gateway_whose_clock_is_off_is_an_alarm_that_says_by_how_much(
    web: Api, page: Page
) -> None:
    gateways = Gateways(GatewayRule(), 1.0, lambda *_: None)
    now = time.time_ns() // 1_000_000
    ((gateway, breach),) = gateways.on_clock("store-gw", 10 * 60_000 + 3_000, now)
    with transaction(web.engine) as s:
        row = upsert_breach(s, gateway, breach)
    with transaction(web.engine) as s:
        alarm, _ = sync_alarm(s, row)
        line = alarm_line(None, gateway, breach, row, alarm.id)
    assert "gateway_clock: gateway store-gw (store-gw)" in line
    assert "clock 10.1 min ahead" in line
    sign_in(page, web, Role.OPERATOR)
    item = page.locator(f'#alarms li.alarm[data-alarm="{alarm.id}"]')
    expect(item).to_contain_text("Gateway clock off")
    expect(item.locator(".values")).to_have_text("10.1 min ahead")
    # the same words when the board's script draws it again from the API
    page.evaluate("refreshAlarms()")
    expect(item.locator(".values")).to_have_text("10.1 min ahead")
    shoot(page, "board-en-gateway-clock")
    # reported right again by the gateway's heartbeat: the breach ends
    assert gateways.on_clock("store-gw", 20_000, now + 60_000)[0][1].end_reason == "clock_right"


def test_one_room_warming_past_two_probes_is_one_item_acknowledged_once(
    web: Api, page: Page
) -> None:
    first, second = an_alarm(web, "cr2-ctrl.air"), an_alarm(web, "cr2-th.temp")
    sign_in(page, web, Role.OPERATOR)
    items = page.locator("#alarms li.alarm")
    expect(items).to_have_count(1)
    expect(page.locator("#alarm-count")).to_have_text("2")
    expect(items.first.locator(".sensors")).to_have_text("cr2-ctrl.air, cr2-th.temp")
    items.first.locator("input[name=comment]").fill("Room 2 door shut; both probes back soon")
    items.first.locator("button[type=submit]").click()
    expect(items.first).to_contain_text(f"Acknowledged by {user_of(Role.OPERATOR)}")
    with web.client(Role.OPERATOR) as operator:
        states = {
            operator.get(f"/api/alarms/{i}").json()["acknowledged_by"] for i in (first, second)
        }
    assert states == {user_of(Role.OPERATOR)}  # each alarm keeps its own record


def test_the_board_shows_calibrated_temperatures_and_says_so(web: Api, page: Page) -> None:
    sign_in(page, web, Role.VIEWER)
    expect(page.locator("#calibrated-note")).to_contain_text("calibrated")
    expect(page.locator("body[data-live=connected]")).to_be_attached()
    expect(page.locator('[data-sensor="store-gw/cr2-ctrl.air"] .value')).to_have_text("—")
    now = time.time_ns() // 1_000_000
    with Session(web.engine) as s:
        correction = calibration_at(s, "store-gw", "cr2-ctrl.air", now).correction_c
    assert correction != 0.0
    publish(
        web,
        "store-gw",
        "county-store",
        [Reading(sensor="cr2-ctrl.air", ts_ms=now, q=Quality.OK, temp_c=2.0)],
    )
    # cold room 2's air probe has sent nothing since the API started: its place waits
    # on the board, and the first reading fills it live
    shown = page.locator('[data-sensor="store-gw/cr2-ctrl.air"]').first
    expect(shown.locator(".value")).to_have_text(f"{2.0 + correction:.1f}")
    expect(shown).to_have_attribute(
        "title", re.compile(re.escape(f"raw 2.0 °C, correction {correction:+.1f} °C"))
    )


def test_a_viewer_may_look_but_not_acknowledge(web: Api, page: Page) -> None:
    an_alarm(web)
    sign_in(page, web, Role.VIEWER)
    expect(page.locator("#alarms li.alarm")).to_have_count(1)
    expect(page.locator("#alarms form.ack")).to_have_count(0)
    # the batches affected by name, not as links to a page the role may not open
    expect(page.locator("#alarms .batch", has_text="B-BEEF-0414")).to_be_visible()
    expect(page.locator('#alarms a[href^="/batches/"]')).to_have_count(0)
    page.goto(f"{web.url}/batches/B-BEEF-0414")
    expect(page.locator("main")).to_contain_text("Your role may not see this page")
    page.click("text=Back to the alarm board")  # and a way back
    page.wait_for_url(lambda url: urlparse(url).path == "/board")


def test_the_cab_view_shows_new_readings_live_in_both_languages(web: Api, page: Page) -> None:
    sign_in(page, web, Role.DRIVER, then="/cab/truck-01")
    expect(page.locator("body[data-live=connected]")).to_be_attached()
    now = time.time_ns() // 1_000_000
    publish(
        web,
        "truck-01",
        "county-fleet",
        [
            Reading(sensor="truck-01-reefer.air", ts_ms=now, q=Quality.OK, temp_c=-17.3),
            Reading(sensor="truck-01-reefer.setpoint", ts_ms=now, q=Quality.OK, setpoint_c=-20.0),
            Reading(sensor="truck-01-rear.door", ts_ms=now, q=Quality.OK, door_open=True),
        ],
    )
    front = page.locator('section[data-location="truck-01.front"]')
    expect(front.locator(".big.temp .value")).to_have_text("-17.3", timeout=15_000)
    expect(front.locator(".setpoint .value")).to_have_text("-20.0")
    rear = page.locator('section[data-location="truck-01.rear"]')
    expect(rear.locator(".door .value")).to_have_text("Open")
    shoot(page, "cab-en")
    page.goto(f"{web.url}/cab/truck-01?lang=zh")
    expect(page.locator('section[data-location="truck-01.front"] .big.temp .value')).to_have_text(
        "-17.3"
    )
    expect(page.locator("main")).to_contain_text("设定值")
    shoot(page, "cab-zh")


def test_the_batch_report_downloads_as_a_pdf_with_the_batch_the_mkt_and_the_verdict(
    web: Api, page: Page, tmp_path: Path
) -> None:
    for tool in ("pdftotext", "pdffonts"):
        assert shutil.which(tool), f"{tool} is missing (apt-get install poppler-utils)"
    sign_in(page, web, Role.QUALITY, then="/batches/B-BEEF-0414")
    for lang in ("en", "zh"):
        page.goto(f"{web.url}/batches/B-BEEF-0414?lang={lang}")
        with page.expect_download() as download:
            page.click("#pdf")
        pdf = tmp_path / f"report-{lang}.pdf"
        download.value.save_as(pdf)
        assert pdf.read_bytes().startswith(b"%PDF")
        text = subprocess.run(
            ["pdftotext", "-layout", str(pdf), "-"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "B-BEEF-0414" in text and "MKT" in text
        # the outcome in the reader's words, never its code
        assert not re.search(r"\((accept|review|reject)\)", text), text[:2000]
        if lang == "en":
            assert re.search(r"Verdict: (Accept|Review|Reject)", text), text[:2000]
        assert re.search(r"SHA-256\): [0-9a-f]{64}", text)
        if lang == "zh":
            assert "结论" in text
            fonts = subprocess.run(
                ["pdffonts", str(pdf)], capture_output=True, text=True, timeout=60, check=True
            ).stdout
            assert "WenQuanYi" in fonts or "Noto" in fonts, fonts


def test_the_public_trace_page_shows_no_internal_field(web: Api, page: Page) -> None:
    with httpx.Client(base_url=web.url, timeout=20) as client:
        token = web.token(Role.VIEWER)
        code = client.get(
            "/api/batches/B-BEEF-0414", headers={"Authorization": f"Bearer {token}"}
        ).json()["trace_code"]
        svg = client.get(f"/t/{code}/qr.svg")
        png = client.get(f"/t/{code}/qr.png")
    assert svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content
    assert png.content.startswith(b"\x89PNG")
    an_alarm(web)  # an alarm with batches and, later, a comment: none of it is public
    for lang, product_word in (("en", "Origin"), ("zh", "产地")):
        page.goto(f"{web.url}/t/{code}?lang={lang}")
        expect(page.locator("h1")).to_have_text("chilled beef")
        body = page.locator("body").inner_text()
        assert product_word in body and "Linxia halal beef cooperative" in body
        for internal in (
            "warehouse.li",
            "B-BEEF-0414",
            "B-CHK-0415",
            "operator",
            "Acknowledge",
            "Sign out",
            "cr2-ctrl",
        ):
            assert internal not in body, internal
        shoot(page, f"trace-{lang}")


def test_the_monitoring_wall_and_sign_in_pages_in_both_languages(web: Api, page: Page) -> None:
    an_alarm(web)
    for lang in ("en", "zh"):
        page.goto(f"{web.url}/login?lang={lang}")
        shoot(page, f"login-{lang}")
    now = time.time_ns() // 1_000_000
    position = Reading(
        sensor="truck-01-gps.pos",
        ts_ms=now,
        q=Quality.OK,
        lat_deg=35.7521,
        lon_deg=103.0118,
        speed_kmh=42.0,
    )
    deadline = time.monotonic() + 15
    while not any(r.quantity == "position" for r in web.app.state.services.hub.latest.values()):
        assert time.monotonic() < deadline, "the live hub never saw the truck's position"
        publish(web, "truck-01", "county-fleet", [position])
        time.sleep(0.3)
    sign_in(page, web, Role.VIEWER, then="/wall")
    expect(page.locator("#wall-alarms")).to_have_text("1")
    expect(page.locator("#wall-alarms-today")).to_have_text(re.compile(r"^[01]$"))
    expect(page.locator('[data-truck="truck-01"]')).to_contain_text("42 km/h")
    expect(page.locator('[data-truck="truck-01"]')).to_contain_text("35.7521, 103.0118")
    expect(page.locator('.tile[data-location="cr2"]')).to_have_class(re.compile("state-alarm"))
    shoot(page, "wall-en")
    page.goto(f"{web.url}/wall?lang=zh")
    shoot(page, "wall-zh")
    page.goto(f"{web.url}/batches")
    shoot(page, "batches-zh")
    page.goto(f"{web.url}/batches?lang=en")
    expect(page.locator("h1")).to_have_text("Batches")
    shoot(page, "batches-en")


def test_the_truck_gateway_serves_the_cab_view_and_keeps_serving_it_without_the_broker(
    make_setup: Callable[[Broker], Setup], running_broker: Broker, page: Page
) -> None:
    setup = make_setup(running_broker, record=False)
    cab_port = free_port()
    config = setup.gateway.config
    config.write_text(
        config.read_text().replace(
            "[[buses]]",
            f"[cab]\nport = {cab_port}\n"
            'labels = { "cr1-ctrl" = "Front <b>frozen</b>" }\n\n[[buses]]',
            1,
        )
    )
    setup.gateway.start()
    cab = f"http://127.0.0.1:{cab_port}/"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(cab, timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the gateway's cab view did not start"
            time.sleep(0.2)
    page.goto(cab)
    front = page.locator('section[data-device="cr1-ctrl"]')
    expect(front.locator("h2")).to_have_text("Front <b>frozen</b>")  # a label is text
    expect(front.locator("h2 b")).to_have_count(0)
    served = httpx.get(cab, timeout=5)
    assert "script-src 'self'" in served.headers["content-security-policy"]
    assert "<script>" not in served.text
    # a page on the cab network that rebinds its own name to the gateway is refused
    assert httpx.get(cab, headers={"Host": "rebound.example"}, timeout=5).status_code == 400
    expect(front.locator(".temp .value")).to_have_text("-19.5")
    expect(front.locator(".setpoint")).to_contain_text("-20.0")
    expect(page.locator("#uplink")).not_to_have_class("down")
    shoot(page, "gateway-cab-online")
    scraped = httpx.get(f"{cab}metrics", timeout=5).text  # the gateway's own metrics
    for name in (
        "coldchain_gateway_readings_taken_total",
        "coldchain_gateway_modbus_requests_total",
        "coldchain_gateway_modbus_bad_responses_total",
        "coldchain_gateway_publisher_published_messages_total",
    ):
        assert name in scraped, name
    assert httpx.get(f"{cab}health", timeout=5).json()["state"] == "ok"
    running_broker.stop()  # the truck loses its signal: the central service is gone
    try:
        expect(page.locator("#uplink")).to_have_class("down", timeout=30_000)
        time.sleep(3)
        page.reload()  # served by the gateway itself, from its own readings
        expect(front.locator(".temp .value")).to_have_text("-19.5")
        answer = httpx.get(f"{cab}health", timeout=5)  # still polling, but not sending
        assert answer.status_code == 503 and answer.json()["state"] == "degraded"
        assert "uplink down" in answer.json()["reasons"][0]
        ages = front.locator(".age").inner_text()
        assert int(ages.split()[0]) < 10, ages  # still reading the devices
        shoot(page, "gateway-cab-no-signal")
    finally:
        running_broker.start()


def test_the_alarm_history_page_filters_and_links_its_csv(web: Api, page: Page) -> None:
    critical = an_alarm(web, "cr2-ctrl.air")
    warning = an_alarm(web, "cr2-th.temp", level=Level.WARNING, ended=True)
    sign_in(page, web, Role.VIEWER, then="/alarms")
    rows = page.locator("#alarm-history tbody tr[data-alarm]")
    expect(rows).to_have_count(2)
    page.select_option("select[name=level]", "warning")
    page.click("#alarm-filters button[type=submit]")
    page.wait_for_url(re.compile(r"level=warning"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-alarm", str(warning))
    expect(rows.first.locator(".state")).to_have_text("Cleared, not acknowledged")
    href = page.locator("#alarms-csv").get_attribute("href")
    assert href is not None and "level=warning" in href
    with httpx.Client(base_url=web.url, timeout=20) as client:
        client.headers["Authorization"] = f"Bearer {web.token(Role.VIEWER)}"
        exported = client.get(href).text.splitlines()
    assert [line.split(",")[0] for line in exported[1:]] == [str(warning)]
    assert str(critical) not in [line.split(",")[0] for line in exported[1:]]
    shoot(page, "alarm-history-en")


def test_a_driver_loads_and_unloads_a_batch_on_a_phone_by_its_code(
    web: Api, browser: Browser
) -> None:
    with web.client(Role.VIEWER) as viewer:
        code = viewer.get("/api/batches/B-BEEF-0414").json()["trace_code"]
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.set_default_timeout(20_000)
    page = phone.new_page()
    try:
        sign_in(page, web, Role.DRIVER, then="/custody")
        # what the camera reads off the label is the trace address; typing it works too
        page.fill("#find-batch input[name=code]", f"{web.url}/t/{code}")
        page.click("#find-batch button[type=submit]")
        expect(page.locator("#batch")).to_have_attribute("data-batch", "B-BEEF-0414")
        expect(page.locator("#now-in")).to_have_text("Cold room 2 (chilled)")
        loads = page.locator('.move[data-event="loaded"] button')
        # only the compartments of their own truck
        expect(loads).to_have_text(["Truck 01 front (frozen)", "Truck 01 rear (chilled)"])
        shoot(page, "custody-phone-en")
        page.locator('.move-form[data-to="truck-01.rear"] button').click()
        expect(page.locator("#now-in")).to_have_text("Truck 01 rear (chilled)")
        page.locator('.move-form[data-to="ts.chilled"] button').click()
        expect(page.locator("#now-in")).not_to_have_text("Truck 01 rear (chilled)")
        page.fill("#find-batch input[name=code]", "NOSUCHCODE12")
        page.click("#find-batch button[type=submit]")
        expect(page.locator("#not-found")).to_be_visible()
    finally:
        phone.close()
    with web.client(Role.VIEWER) as viewer:
        journey = viewer.get("/api/batches/B-BEEF-0414").json()["journey"]
    assert [(s["location_id"], s["event"], s["handed_over_by"]) for s in journey[-2:]] == [
        ("truck-01.rear", "loaded", user_of(Role.DRIVER)),
        ("ts.chilled", "unloaded", user_of(Role.DRIVER)),
    ]


def test_a_phone_without_a_live_scanner_finds_a_batch_from_a_photo_of_its_label(
    web: Api, browser: Browser, tmp_path: Path
) -> None:
    from tests.test_custody import label_photo

    with web.client(Role.VIEWER) as viewer:
        code = viewer.get("/api/batches/B-BEEF-0414").json()["trace_code"]
    photo = tmp_path / "label.jpg"
    photo.write_bytes(label_photo(f"{web.url}/t/{code}"))
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.set_default_timeout(20_000)
    page = phone.new_page()
    try:
        sign_in(page, web, Role.DRIVER, then="/custody")
        # this Chromium has no BarcodeDetector: the page offers a photo instead
        assert page.evaluate("'BarcodeDetector' in window") is False
        expect(page.locator("#photo-scan")).to_be_visible()
        page.locator("#photo-scan input").set_input_files(str(photo))
        expect(page.locator("#batch")).to_have_attribute("data-batch", "B-BEEF-0414")
        blank = tmp_path / "wall.png"
        blank.write_bytes(label_photo("x")[:100])  # a broken file
        page.locator("#photo-scan input").set_input_files(str(blank))
        expect(page.locator("#scan-error")).to_contain_text("JPEG, PNG or WebP")
    finally:
        phone.close()


def test_signing_in_never_leads_off_this_site(web: Api, page: Page) -> None:
    for where in ("/\\evil.example", "//evil.example", "/\tevil.example", "https://evil.example"):
        page.context.clear_cookies()
        page.goto(f"{web.url}/login?lang=en&next={quote(where)}")
        page.fill("input[name=username]", user_of(Role.VIEWER))
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: urlparse(url).path == "/board")
        assert urlparse(page.url).netloc == urlparse(web.url).netloc, where
    page.context.clear_cookies()
    page.goto(f"{web.url}/login?lang=en&next={quote('/alarms?state=cleared')}")  # its own: kept
    page.fill("input[name=username]", user_of(Role.VIEWER))
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: urlparse(url).path == "/alarms")


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (3840, 2160)])
def test_the_wall_fits_its_screen_with_many_alarms_and_an_offline_truck_is_grey(
    web: Api, browser: Browser, width: int, height: int
) -> None:
    """Forty alarms and every place on one screen: nothing runs past its edges (the
    alarm list scrolls and pages inside its panel); a truck whose gateway is offline is
    drawn grey, not green."""
    places = [
        ("store-gw", "cr1-ctrl.air"), ("store-gw", "cr2-ctrl.air"), ("store-gw", "ct-probe.temp"),
        ("store-gw", "pc-ctrl.air"), ("truck-01", "truck-01-reefer.air"),
        ("truck-01", "truck-01-rear.temp"), ("truck-02", "truck-02-reefer.air"),
        ("truck-02", "truck-02-rear.temp"), ("ts-gw", "ts-th.temp"), ("ts-gw", "ts-probe.temp"),
    ]  # fmt: skip
    for n, (gateway, sensor) in enumerate(places):  # forty alarms the wall shows apart
        for kind in (Kind.HIGH, Kind.LOW):
            for level in (Level.WARNING, Level.CRITICAL):
                start = web.t0_ms + n * 60_000
                an_alarm(web, sensor, kind=kind, level=level, start_ms=start, gateway=gateway)
    hub = web.app.state.services.hub
    position = Reading(
        sensor="truck-02-gps.pos", ts_ms=time.time_ns() // 1_000_000, q=Quality.OK,
        lat_deg=35.61, lon_deg=103.21, speed_kmh=0.0,
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while hub.gateways.get("truck-02") != "offline" or not any(
        r.gateway == "truck-02" and r.quantity == "position" for r in hub.latest.values()
    ):
        assert time.monotonic() < deadline, "the live hub never saw truck 02 go offline"
        publish(web, "truck-02", "county-fleet", [position])
        publish_status(web, "truck-02", "county-fleet", "offline")
        time.sleep(0.3)
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        sign_in(page, web, Role.VIEWER, then="/wall")
        expect(page.locator("#alarms li.alarm")).not_to_have_count(0)
        overflow = page.evaluate(
            """() => {
                const doc = document.scrollingElement;
                const outside = [...document.querySelectorAll("main *")].filter((el) => {
                    const r = el.getBoundingClientRect();
                    const inPanel = el.closest(".wall-alarms, .wall-places") !== null;
                    const shown = r.width > 0 && r.height > 0 && !inPanel;
                    return shown && (r.right > innerWidth + 1 || r.bottom > innerHeight + 1);
                }).map((el) => el.className || el.tagName);
                const list = document.getElementById("alarms");
                return {page: doc.scrollHeight - innerHeight, wide: doc.scrollWidth - innerWidth,
                        outside, listScrolls: list.scrollHeight > list.clientHeight,
                        listBottom: list.getBoundingClientRect().bottom - innerHeight};
            }"""
        )
        assert overflow["page"] <= 0 and overflow["wide"] <= 0, overflow
        assert overflow["outside"] == [] and overflow["listBottom"] <= 1, overflow
        assert overflow["listScrolls"], overflow  # forty alarms: the panel scrolls
        truck = page.locator('.tile.truck[data-truck="truck-02"]')
        expect(truck).to_have_class(re.compile("gw-offline"))
        grey = truck.evaluate("(el) => getComputedStyle(el).borderLeftColor")
        assert grey == "rgb(107, 107, 107)", grey
        shoot(page, f"wall-{width}x{height}")
    finally:
        context.close()
