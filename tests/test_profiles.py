"""Product profiles changed in the product: now, or from a later time (the new season's
limits), through the API (SQLite and PostgreSQL) and the page (Chromium)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Page, expect

from alerts.repo.users import Role
from tests.api_server import Api
from tests.browser import shoot, sign_in

pytestmark = pytest.mark.e2e

HOUR_MS = 3_600_000


def test_a_profile_change_scheduled_for_later_is_in_force_only_from_its_time(api: Api) -> None:
    later = time.time_ns() // 1_000_000 + 24 * HOUR_MS
    with api.client(Role.QUALITY) as quality:
        now = quality.get("/api/profiles/frozen-meat").json()
        summer = {**now, "warning": {**now["warning"], "high_c": -16.0}}
        reply = quality.put(
            "/api/profiles/frozen-meat",
            json={"profile": summer, "reason": "summer spec from the buyer", "from_ms": later},
        )
        assert reply.status_code == 200, reply.text
        assert quality.get("/api/profiles/frozen-meat").json() == now
        at_its_time = quality.get("/api/profiles/frozen-meat", params={"at_ms": later})
        assert at_its_time.json()["warning"]["high_c"] == -16.0
        listed = {p["id"]: p for p in quality.get("/api/profiles").json()}
        assert listed["frozen-meat"] == now

        # a change now leaves the scheduled one in place
        longer = {**now, "critical": {**now["critical"], "delay_min": 20.0}}
        changed = quality.put(
            "/api/profiles/frozen-meat", json={"profile": longer, "reason": "door-heavy week"}
        )
        assert changed.status_code == 200
        assert quality.get("/api/profiles/frozen-meat").json()["critical"]["delay_min"] == 20.0
        scheduled = quality.get("/api/profiles/frozen-meat", params={"at_ms": later}).json()
        assert scheduled["warning"]["high_c"] == -16.0
        new_one = quality.put(
            "/api/profiles/fresh-yak",
            json={"profile": summer, "reason": "new product", "from_ms": later},
        )
        assert new_one.status_code == 400  # a new profile is in force from now
        trail = quality.get(
            "/api/audit", params={"entity": "profile", "entity_id": "frozen-meat"}
        ).json()
    assert [r["action"] for r in trail[:2]] == ["profile.save", "profile.schedule"]
    assert trail[1]["new_value"]["in_force_from_ms"] == later


def test_quality_staff_schedule_the_new_season_s_limits_on_the_profiles_page(
    web: Api, page: Page
) -> None:
    sign_in(page, web, Role.QUALITY, then="/profiles")
    card = page.locator('section[data-profile="chilled-meat"]')
    card.locator("summary").click()
    form = card.locator("form")
    expect(form.locator('input[name="profile.warning.high_c"]')).to_have_value("4.0")
    form.locator('input[name="profile.warning.high_c"]').fill("5")
    from_ms = time.time_ns() // 1_000_000 + 48 * HOUR_MS
    local = datetime.fromtimestamp(from_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")
    form.locator('input[name="from_ms"]').fill(local)  # the browser's zone is UTC here
    form.locator('input[name="reason"]').fill("Buyer's spec for the spring")
    form.locator("button[type=submit]").click()
    expect(card.locator(".scheduled")).to_contain_text("Warning 0.0 – 5.0 °C")
    expect(card.locator(".limits")).to_contain_text("0.0 – 4.0 °C")
    shoot(page, "profiles-en")
    with web.client(Role.VIEWER) as viewer:
        now = viewer.get("/api/profiles/chilled-meat").json()
        then = viewer.get("/api/profiles/chilled-meat", params={"at_ms": from_ms}).json()
    assert (now["warning"]["high_c"], then["warning"]["high_c"]) == (4.0, 5.0)
    assert then["critical"] == now["critical"] and then["two_hour_rule"] is True
    assert then["products"] == now["products"]
