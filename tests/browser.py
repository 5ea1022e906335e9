"""Debian's Chromium for the page tests (Playwright pointed at the Debian binary; no
browser is ever downloaded): the browser, a desktop page, signing in, screenshots, and
publishing readings to the test broker as a gateway does."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from playwright.sync_api import Browser, Page, sync_playwright

from alerts.repo.users import Role
from coldchain import wire
from coldchain.wire import Reading, ReadingsBatch, Status, Stream
from tests.api_server import PASSWORD, Api, user_of

CHROMIUM = "/usr/lib/chromium/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SHOTS = Path(os.environ.get("COLDCHAIN_ARTIFACTS", "artifacts")) / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=60_000)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A desktop page. Every page test also checks that nothing the page does breaks
    the site's Content-Security-Policy (Chromium reports each refusal on the console)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    opened = context.new_page()
    refused: list[str] = []
    opened.on(
        "console",
        lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
    )
    try:
        yield opened
    finally:
        context.close()
    assert refused == [], refused


def sign_in(page: Page, web: Api, role: Role, lang: str = "en", then: str = "/board") -> None:
    page.goto(f"{web.url}/login?lang={lang}&next={then}")
    page.fill("input[name=username]", user_of(role))
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: urlparse(url).path == then)


def shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def publish(web: Api, gateway: str, site: str, readings: list[Reading], seq: int = 1) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.connect("127.0.0.1", web.broker.port)
    client.loop_start()
    batch = ReadingsBatch(
        v=wire.SCHEMA_VERSION, gateway=gateway, site=site, epoch=9, seq=seq, readings=readings
    )
    client.publish(
        wire.topic(site, gateway, Stream.READINGS), wire.encode(batch), qos=1
    ).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def publish_status(web: Api, gateway: str, site: str, state: str) -> None:
    """A gateway's status as it publishes one (not retained: the tests share a broker)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.connect("127.0.0.1", web.broker.port)
    client.loop_start()
    status = Status(
        v=wire.SCHEMA_VERSION,
        gateway=gateway,
        site=site,
        state=state,  # type: ignore[arg-type]
        ts_ms=time.time_ns() // 1_000_000,
    )
    client.publish(
        wire.topic(site, gateway, Stream.STATUS), wire.encode(status), qos=1
    ).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
