"""A county's day on the pages, in Debian's Chromium, as the people who do it: the admin
adds a cold room and assigns the sensor heard there to it; the warehouse receives a
batch on a phone, prints its label and moves it into the new room; the room warms and
the real alert service raises the breach on the batch; the warehouse sees it on the
board; the driver loads the batch onto their truck by typing its code and unloads it at
the transfer station, whose store then warms too; quality staff find both breaches and
the whole journey in the batch's audit. Every step goes through the pages and the API
they call, against the real app, database, broker and alert service."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from alerts.repo.users import Role
from alerts.service import AlertService
from coldchain.settings import MqttConfig
from coldchain.wire import Quality, Reading
from tests.api_server import Api, user_of
from tests.browser import publish, shoot, sign_in

pytestmark = pytest.mark.e2e

SENSOR = "cr9-th.temp"
ROOM = "Cold room 9 (chilled)"


class RoomSensor:
    """A room's transmitter (by default the new room's), published as its site's gateway
    does, every half second, at the temperature the room is at."""

    def __init__(
        self, web: Api, gateway: str = "store-gw", site: str = "county-store", sensor: str = SENSOR
    ) -> None:
        self.web = web
        self.where = (gateway, site, sensor)
        self.temp_c = 3.0
        self._stop = threading.Event()
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="room-sensor", daemon=True)

    def _run(self) -> None:
        seq = 0
        gateway, site, sensor = self.where
        try:
            while not self._stop.wait(0.5):
                seq += 1
                now = time.time_ns() // 1_000_000
                reading = Reading(sensor=sensor, ts_ms=now, q=Quality.OK, temp_c=self.temp_c)
                publish(self.web, gateway, site, [reading], seq=1000 + seq)
        except BaseException as e:  # said by __exit__: a silent sensor would fail later
            self.failed = e

    def __enter__(self) -> RoomSensor:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self.failed is None, f"the room sensor stopped: {self.failed!r}"


def phone(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    context.set_default_timeout(20_000)
    return context


def wait_for_alarm(
    web: Api, batch_id: str, timeout_s: float, location: str = "cr9"
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    with web.client(Role.OPERATOR) as operator:
        while time.monotonic() < deadline:
            for alarm in operator.get("/api/alarms").json():
                if alarm["location_id"] == location and batch_id in alarm["batches"]:
                    return dict(alarm)
            time.sleep(0.3)
    raise AssertionError(f"no alarm in {location} on {batch_id} within {timeout_s} s")


def admin_adds_the_room_and_assigns_its_sensor(web: Api, page: Page) -> None:
    sign_in(page, web, Role.ADMIN, then="/setup")
    form = page.locator("#location-form")
    form.locator("input[name=id]").fill("cr9")
    form.locator("select[name=site]").select_option("county-store")
    form.locator("select[name=kind]").select_option("cold_room")
    form.locator("input[name=name]").fill(ROOM)
    form.locator("select[name=profile]").select_option("chilled-meat")
    form.locator("button[type=submit]").click()
    row = page.locator('tr[data-location="cr9"]')
    expect(row).to_contain_text("No sensor")
    # the transmitter is heard and measures nothing yet: one tap fills the form
    heard = page.locator(f'#heard tr[data-heard="store-gw/{SENSOR}"]')
    if not heard.count():  # heard after this page was drawn
        page.reload()
    heard.locator("button").click()
    assign = page.locator("#assign-form")
    expect(assign.locator("input[name=sensor]")).to_have_value(SENSOR)
    expect(assign.locator("select[name=gateway]")).to_have_value("store-gw")
    assign.locator("select[name=location]").select_option("cr9")
    assign.locator("button[type=submit]").click()
    expect(row.locator(".sensor")).to_have_text([f"store-gw/{SENSOR}"])
    expect(heard).to_have_count(0)
    shoot(page, "setup-en")


def warehouse_receives_labels_and_moves_it_in(
    web: Api, warehouse: Page, tmp_path: Path
) -> tuple[str, str]:
    sign_in(warehouse, web, Role.OPERATOR, then="/receive")
    form = warehouse.locator("#receive")
    batch_id = form.locator("input[name=id]").input_value()
    assert batch_id.startswith("B-")
    form.locator("input[name=product]").fill("Chilled yak meat")
    form.locator("select[name=into_location]").select_option("cr2")
    # the room's profile is offered for the batch
    expect(form.locator("select[name=profile_id]")).to_have_value("chilled-meat")
    form.locator("input[name=origin_producer]").fill("Hongyuan yak cooperative")
    form.locator("input[name=origin_village]").fill("Xiangda")
    form.locator("input[name=quantity]").fill("120")
    form.locator("input[name=lot]").fill("L-2026-117")
    form.locator("input[name=temp_c]").fill("2.5")
    shoot(warehouse, "receive-phone-en")
    form.locator("button[type=submit]").click()
    warehouse.wait_for_url(lambda url: urlparse(url).path == "/custody")
    expect(warehouse.locator("#batch")).to_have_attribute("data-batch", batch_id)
    expect(warehouse.locator("#now-in")).to_have_text("Cold room 2 (chilled)")

    href = warehouse.locator("#label").get_attribute("href")
    assert href is not None
    label = warehouse.request.get(f"{web.url}{href}")  # signed in as the page is
    assert label.ok and label.headers["content-type"] == "application/pdf"
    pdf = tmp_path / "label.pdf"
    pdf.write_bytes(label.body())
    with web.client(Role.OPERATOR) as operator:
        code = operator.get(f"/api/batches/{batch_id}").json()["trace_code"]
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext is not installed (apt-get install poppler-utils)")
    text = subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert batch_id in text and code in text

    warehouse.locator('.move[data-event="transferred"] .move-form[data-to="cr9"] button').click()
    expect(warehouse.locator("#now-in")).to_have_text(ROOM)
    return batch_id, code


def driver_loads_and_unloads(web: Api, driver: Page, code: str) -> None:
    sign_in(driver, web, Role.DRIVER, then="/custody")
    driver.fill("#find-batch input[name=code]", code)
    driver.click("#find-batch button[type=submit]")
    expect(driver.locator("#now-in")).to_have_text(ROOM)
    driver.locator('.move-form[data-to="truck-01.rear"] button').click()
    expect(driver.locator("#now-in")).to_have_text("Truck 01 rear (chilled)")
    driver.locator('.move[data-event="unloaded"] .move-form[data-to="ts.chilled"] button').click()
    expect(driver.locator("#now-in")).to_have_text("Transfer station chilled store")


def test_a_room_set_up_on_the_pages_warms_and_its_batch_carries_the_breach_to_its_audit(
    web: Api, page: Page, browser: Browser, tmp_path: Path, unique: str
) -> None:
    alerts = AlertService(
        web.engine,
        MqttConfig(port=web.broker.port),
        client_id=f"alerts-{unique}",
        sites=("county-store", "transfer-station"),
        time_scale=120.0,  # the chilled profile's 15-minute critical delay is 7.5 s
        reload_s=0.5,  # a room and sensor set up on the pages are judged at once
        on_alarm=lambda _line: None,
    )
    alerts.start()
    warehouse_phone, driver_phone = phone(browser), phone(browser)
    try:
        with RoomSensor(web) as room:
            admin_adds_the_room_and_assigns_its_sensor(web, page)
            warehouse = warehouse_phone.new_page()
            batch_id, code = warehouse_receives_labels_and_moves_it_in(web, warehouse, tmp_path)

            room.temp_c = 12.5  # the compressor stops
            alarm = wait_for_alarm(web, batch_id, 60)
            assert alarm["level"] in ("warning", "critical") and alarm["kind"] == "high"
            warehouse.goto(f"{web.url}/board")
            item = warehouse.locator(f'#alarms li[data-alarm="{alarm["id"]}"]')
            expect(item).to_contain_text(ROOM)
            expect(item).to_contain_text(batch_id)
            shoot(warehouse, "board-phone-walk-en")
            room.temp_c = 3.0  # repaired

        driver_loads_and_unloads(web, driver_phone.new_page(), code)
        # then the station's store warms too, with the batch in it
        with RoomSensor(web, "ts-gw", "transfer-station", "ts-th.temp") as station:
            station.temp_c = 11.0
            wait_for_alarm(web, batch_id, 60, location="ts.chilled")
    finally:
        warehouse_phone.close()
        driver_phone.close()
        alerts.stop()

    sign_in(page, web, Role.QUALITY, then=f"/batches/{batch_id}")
    expect(page.locator("#batch-alarms")).to_contain_text("High")
    journey = page.locator("table", has_text="Cold room 2 (chilled)")
    for place in (
        "Cold room 2 (chilled)",
        ROOM,
        "Truck 01 rear (chilled)",
        "Transfer station chilled store",
    ):
        expect(journey).to_contain_text(place)
    shoot(page, "batch-audit-walk-en")
    with web.client(Role.QUALITY) as quality:
        trail = quality.get("/api/audit", params={"limit": 5000}).json()
        report = quality.get(f"/api/batches/{batch_id}/report").json()
    # both breaches, the new room's and the station's, are in the batch's audit
    assert {("cr9", "high"), ("ts.chilled", "high")} <= {
        (b["location_id"], b["breach"]["kind"]) for b in report["breaches"]
    }
    by = {(row["entity_id"], row["actor"]) for row in trail}
    assert ("cr9", user_of(Role.ADMIN)) in by
    assert (batch_id, user_of(Role.OPERATOR)) in by
    assert (batch_id, user_of(Role.DRIVER)) in by


def test_an_admin_adds_a_user_on_the_page_who_signs_in_with_the_password_shown_once(
    web: Api, page: Page, browser: Browser
) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, web, Role.ADMIN, then="/setup/users")
    form = page.locator("#add-user-form")
    form.locator("input[name=username]").fill("warehouse.ma")
    form.locator("input[name=display_name]").fill("Ma Lin")
    form.locator("select[name=role]").select_option("operator")
    form.locator('input[name=sites][value="county-store"]').check()
    form.locator("button[type=submit]").click()
    shown = page.locator("#one-time .password")
    expect(shown).to_be_visible()
    password = shown.inner_text()
    shoot(page, "setup-users-en")
    page.reload()
    row = page.locator('tr[data-user="warehouse.ma"]')
    expect(row).to_contain_text("county-store")
    expect(row).to_contain_text("operator")

    newcomer = browser.new_context(viewport={"width": 1280, "height": 900})
    newcomer.set_default_timeout(20_000)
    try:
        theirs = newcomer.new_page()
        theirs.goto(f"{web.url}/login?lang=en&next=/board")
        theirs.fill("input[name=username]", "warehouse.ma")
        theirs.fill("input[name=password]", password)
        theirs.click("button[type=submit]")
        # a one-time password: they choose their own before anything else
        theirs.wait_for_url(lambda url: urlparse(url).path == "/password")
        expect(theirs.locator("#first-time")).to_be_visible()
        theirs.goto(f"{web.url}/board")
        theirs.wait_for_url(lambda url: urlparse(url).path == "/password")
        theirs.fill("input[name=current_password]", password)
        theirs.fill("input[name=new_password]", "thukpa with yak 7")
        theirs.click("#password-form button[type=submit]")
        theirs.wait_for_url(lambda url: urlparse(url).path == "/login")
        theirs.fill("input[name=username]", "warehouse.ma")
        theirs.fill("input[name=password]", "thukpa with yak 7")
        theirs.click("button[type=submit]")
        theirs.wait_for_url(lambda url: urlparse(url).path == "/board")
        expect(theirs.locator("main")).to_contain_text("County public cold store")
        expect(theirs.locator("main")).not_to_contain_text("County delivery fleet")

        # moved to quality staff, then a lost password reset: their sessions end
        row.locator("button[data-fill]").click()
        change = page.locator("#user-form")
        expect(change.locator("input[name=username]")).to_have_value("warehouse.ma")
        expect(change.locator('input[name=sites][value="county-store"]')).to_be_checked()
        expect(change.locator("input[name=active]")).to_be_checked()
        change.locator("select[name=role]").select_option("quality")
        change.locator("input[name=reason]").fill("Moved to the quality team")
        change.locator("button[type=submit]").click()
        expect(row).to_contain_text("quality")
        row.locator("form.reset button").click()
        expect(shown).to_be_visible()
        assert shown.inner_text() not in ("", password)
        theirs.goto(f"{web.url}/board")
        theirs.wait_for_url(lambda url: urlparse(url).path == "/login")
    finally:
        newcomer.close()

    page.reload()
    row.locator("button[data-fill]").click()
    change.locator("input[name=active]").uncheck()
    change.locator("input[name=reason]").fill("Left the county store")
    change.locator("button[type=submit]").click()
    expect(row).to_contain_text("Deactivated")
    with web.client(Role.ADMIN) as admin:
        (user,) = [u for u in admin.get("/api/users").json() if u["username"] == "warehouse.ma"]
    assert (user["role"], user["active"], user["sites"]) == ("quality", False, ["county-store"])


def test_an_admin_changes_a_room_and_takes_a_sensor_out_of_service_on_the_page(
    web: Api, page: Page
) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, web, Role.ADMIN, then="/setup")
    row = page.locator('tr[data-location="cr2"]')
    row.locator("button[data-fill]").click()
    form = page.locator("#location-form")
    expect(form.locator("input[name=id]")).to_have_value("cr2")
    expect(form.locator("select[name=profile]")).to_have_value("chilled-meat")
    form.locator("input[name=door_open_max_min]").fill("15")
    form.locator("button[type=submit]").click()
    expect(row).to_contain_text("15.0 min")
    row.locator('form[data-assigned="store-gw/cr2-th.temp"] button').click()
    expect(row.locator('form[data-assigned="store-gw/cr2-th.temp"]')).to_have_count(0)
    row.locator("details.history summary").click()  # it keeps its history
    expect(row.locator('[data-ended="store-gw/cr2-th.temp"]')).to_be_visible()
    with web.client(Role.ADMIN) as admin:
        county = admin.get("/api/setup").json()
        trail = admin.get("/api/audit", params={"limit": 5000}).json()
    (cr2,) = [loc for s in county["sites"] for loc in s["locations"] if loc["id"] == "cr2"]
    assert cr2["door_open_max_min"] == 15.0
    assert "store-gw/cr2-th.temp" not in [s["sensor"] for s in cr2["sensors"]]
    mine = [row["action"] for row in trail if row["actor"] == user_of(Role.ADMIN)]
    assert len(mine) == 2, mine  # the room changed, the assignment ended: each audited
