"""History (issue 18): /api/series downsamples a sensor's range into buckets that keep
their min and max (an excursion shorter than a bucket keeps its height), shows gaps as
gaps, corrects by calibration exactly, gives the limits and the excursions; the CSV of a
range; the chart pages in Debian's Chromium (presets, zoom, a short excursion visible);
the truck map with its tiles disabled. A real SQLite readings store and API server."""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

from playwright.sync_api import Page, expect
from sqlalchemy.orm import Session

from alerts.calibration import corrected, record_calibration
from alerts.db import transaction
from alerts.models import Calibration
from alerts.repo.users import Role
from api.routes.history import _calibrations
from coldchain import wire
from coldchain.wire import Quality, Reading, ReadingsBatch
from collector.sqlite_store import SqliteStore
from collector.store import Incoming
from tests.api_server import Api, an_alarm
from tests.browser import shoot, sign_in

MIN = 60_000
DAY = 86_400_000


def store_readings(path: Path, gateway: str, site: str, readings: list[Reading], seq: int) -> None:
    store = SqliteStore(path)
    for n in range(0, len(readings), 5000):  # a batch holds at most 5000
        chunk = readings[n : n + 5000]
        batch = ReadingsBatch(
            v=wire.SCHEMA_VERSION, gateway=gateway, site=site, epoch=1, seq=seq + n, readings=chunk
        )
        store.write([Incoming(batch, chunk[-1].ts_ms)], [])
    store.close()


def a_week_with_a_spike(web: Api) -> tuple[int, int]:
    """Seven days of cold room 1 at −19 °C, one reading a minute, with a three-minute
    excursion to −5 °C three days ago, and a 70-minute gap two days ago (a whole
    30-minute bucket empty, wherever the buckets start)."""
    now = time.time_ns() // 1_000_000 // MIN * MIN
    start = now - 7 * DAY
    spike = now - 3 * DAY
    gap = range(now - 2 * DAY, now - 2 * DAY + 70 * MIN, MIN)
    readings = [
        Reading(
            sensor="cr1-ctrl.air",
            ts_ms=t,
            q=Quality.OK,
            temp_c=-5.0 if spike <= t < spike + 3 * MIN else -19.0 - (t // MIN % 5) / 10,
        )
        for t in range(start, now, MIN)
        if t not in gap
    ]
    store_readings(web.readings_db, "store-gw", "county-store", readings, 100)
    return start, spike


def in_force(web: Api, at_ms: int) -> float:
    """The seeded county's calibration correction of cold room 1's probe at a time."""
    with Session(web.engine) as s:
        return corrected(_calibrations(s, "store-gw", "cr1-ctrl.air"), at_ms, 0.0)


def test_a_week_comes_in_buckets_that_keep_a_short_excursion_and_the_gap(web: Api) -> None:
    start, spike = a_week_with_a_spike(web)
    fix = in_force(web, spike)
    with web.client(Role.OPERATOR) as client:
        week = client.get(
            "/api/series",
            params={"gateway": "store-gw", "sensor": "cr1-ctrl.air", "from_ms": start,
                    "to_ms": start + 7 * DAY, "points": 600},
        ).json()  # fmt: skip
    assert week["bucket_ms"] == 30 * MIN  # 10,010 readings in 337 buckets
    assert len(week["rows"]) <= 600
    (hit,) = [r for r in week["rows"] if r[0] <= spike < r[0] + 30 * MIN]
    assert hit[3] == round(-5.0 + fix, 3) and hit[4] == 30  # the max and the count kept
    assert hit[1] is not None and hit[1] <= -19.0 + fix
    assert -19.5 + fix < hit[2] < -15.0  # the mean alone would hide it
    gaps = [r for r in week["rows"] if r[1] is None]
    assert len(gaps) == 1 and gaps[0][4] == 0
    assert week["limits"] == {
        "profile": "frozen-meat", "warning_low_c": None, "warning_high_c": -18.0,
        "critical_low_c": None, "critical_high_c": -15.0,
    }  # fmt: skip
    assert week["location"] == "cr1"


def test_an_hour_comes_reading_by_reading_calibrated_with_its_excursions(web: Api) -> None:
    start, spike = a_week_with_a_spike(web)
    with transaction(web.engine) as s:
        record_calibration(
            s,
            Calibration(
                gateway="store-gw", sensor="cr1-ctrl.air", calibrated_ms=spike - 10 * MIN,
                reference_instrument="Fluke 1524", correction_c=-0.5,
                next_due_ms=spike + 300 * DAY,
            ),
            actor="quality.test",
        )  # fmt: skip
    an_alarm(web, "cr1-ctrl.air", start_ms=spike, ended=True)
    with web.client(Role.OPERATOR) as client:
        hour = client.get(
            "/api/series",
            params={"gateway": "store-gw", "sensor": "cr1-ctrl.air", "from_ms": spike - 30 * MIN,
                    "to_ms": spike + 30 * MIN},
        ).json()  # fmt: skip
        week = client.get(
            "/api/series",
            params={"gateway": "store-gw", "sensor": "cr1-ctrl.air", "from_ms": start,
                    "to_ms": start + 7 * DAY},
        ).json()  # fmt: skip
    assert hour["bucket_ms"] == 0 and hour["calibrated"] is True
    by_ts = {r[0]: r for r in hour["rows"]}
    assert by_ts[spike][2] == -5.5  # corrected by the calibration in force
    before = spike - 20 * MIN  # before the new calibration: the one before it
    assert by_ts[before][2] == round(-19.0 - (before // MIN % 5) / 10 + in_force(web, before), 3)
    assert [(e["level"], e["start_ms"]) for e in hour["excursions"]] == [("critical", spike)]
    (hit,) = [r for r in week["rows"] if r[0] <= spike < r[0] + 30 * MIN]
    assert hit[3] == -5.5  # exact across the recalibration inside the bucket
    assert hit[1] is not None and hit[1] < -19.0


def test_the_csv_of_a_range_holds_every_reading_raw_and_calibrated(web: Api) -> None:
    start, _spike = a_week_with_a_spike(web)
    with web.client(Role.OPERATOR) as client:
        answer = client.get(
            "/api/series.csv",
            params={"gateway": "store-gw", "sensor": "cr1-ctrl.air", "from_ms": start,
                    "to_ms": start + 2 * DAY},
        )  # fmt: skip
        too_long = client.get(
            "/api/series", params={"gateway": "store-gw", "sensor": "cr1-ctrl.air",
                                   "from_ms": 0, "to_ms": 500 * DAY},
        )  # fmt: skip
        other = web.client(Role.OPERATOR, other=True).get(
            "/api/series", params={"gateway": "store-gw", "sensor": "cr1-ctrl.air"}
        )
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 2 * 1440
    first = rows[0]
    fix = in_force(web, int(first["ts_ms"]))
    assert float(first["value_calibrated"]) == round(float(first["value"]) + fix, 3)
    assert first["q"] == "ok" and first["quantity"] == "temp_c"
    assert too_long.status_code == 422 and other.status_code == 404


def shown(page: Page) -> float:
    """The width of the range the chart shows, in ms."""
    lo, hi = page.evaluate("document.getElementById('chart').chart.xAxisRange()")
    return float(hi - lo)


def drag_zoom(page: Page) -> None:
    """Drag across a tenth of the chart (dygraphs zooms to it; the page fetches finer)."""
    box = page.locator("#chart canvas").first.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.40, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.50, y, steps=8)
    page.mouse.up()


def test_a_chart_page_ranges_zooms_and_shows_an_excursion_shorter_than_a_bucket(
    web: Api, page: Page
) -> None:
    start, _spike = a_week_with_a_spike(web)
    sign_in(page, web, Role.OPERATOR, then="/history")
    page.goto(f"{web.url}/history?s=store-gw/cr1-ctrl.air&from_ms={start}&lang=en")
    chart = page.locator("#chart")
    expect(chart).to_have_attribute("data-loading", "false")
    expect(page.locator("#chart-status")).to_contain_text("min / mean / max of 30 min")
    top = page.evaluate("document.getElementById('chart').chart.yAxisRange()[1]")
    # a three-minute excursion in a 30-minute bucket keeps its height
    assert top >= -5.0 + in_force(web, _spike)
    shoot(page, "history-week-en")
    page.click('#chart-range [data-preset="3600000"]')  # the last hour: every reading
    expect(page.locator("#chart-status")).to_have_text("every reading · calibrated")
    lo, hi = page.evaluate("document.getElementById('chart').chart.xAxisRange()")
    assert abs((hi - lo) - 3_600_000) < 60_000
    page.click('#chart-range [data-preset="604800000"]')
    expect(page.locator("#chart-status")).to_contain_text("30 min")
    drag_zoom(page)  # across about a day
    expect(page.locator("#chart-status")).not_to_contain_text("30 min")
    bucket = int(chart.get_attribute("data-bucket-ms") or "0")
    assert bucket < 30 * MIN
    lo, hi = page.evaluate("document.getElementById('chart').chart.xAxisRange()")
    assert hi - lo < 1.5 * DAY
    href = page.locator("#chart-csv a").first.get_attribute("href")
    assert href is not None and "series.csv" in href and f"from_ms={start}" not in href
    shoot(page, "history-zoomed-en")


def test_a_room_s_page_overlays_its_sensors_with_its_limits(web: Api, page: Page) -> None:
    a_week_with_a_spike(web)
    sign_in(page, web, Role.OPERATOR, then="/board")
    page.goto(f"{web.url}/history/location/cr1?lang=zh")
    expect(page.locator("h1")).to_contain_text("1号冷库")
    expect(page.locator("#chart")).to_have_attribute("data-loading", "false")
    labels = page.evaluate("document.getElementById('chart').chart.getLabels()")
    assert "cr1-ctrl.air (air)" in labels and "cr1-th.temp (air)" in labels
    assert not any("door" in label for label in labels)
    page.click('#chart-range [data-preset="604800000"]')  # a week of the room
    expect(page.locator("#chart")).to_have_attribute("data-bucket-ms", str(30 * MIN))
    assert abs(shown(page) - 7 * DAY) < MIN
    drag_zoom(page)
    expect(page.locator("#chart")).not_to_have_attribute("data-bucket-ms", str(30 * MIN))
    assert shown(page) < 1.5 * DAY
    shoot(page, "history-room-zh")


def test_the_truck_map_draws_tracks_stops_and_breaches_without_tiles(web: Api, page: Page) -> None:
    now = time.time_ns() // 1_000_000 // MIN * MIN
    start = now - 90 * MIN
    track = []
    for m in range(90):
        moving = not 30 <= m < 45  # a quarter of an hour at a depot
        lat = 35.60 + 0.002 * min(m, 30) + 0.002 * max(m - 45, 0)
        track.append(
            Reading(
                sensor="truck-01-gps.pos",
                ts_ms=start + m * MIN,
                q=Quality.OK,
                lat_deg=lat,
                lon_deg=103.20 + 0.001 * m,
                speed_kmh=45.0 if moving else 0.0,
                sats=12,
                hdop=0.8,
            )
        )
    store_readings(web.readings_db, "truck-01", "county-fleet", track, 500)
    an_alarm(web, "truck-01-reefer.air", gateway="truck-01", start_ms=start + 60 * MIN)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    sign_in(page, web, Role.OPERATOR, then="/map")
    expect(page.locator("#map")).to_have_attribute("data-trucks", "1")
    row = page.locator('#trucks tr[data-gateway="truck-01"]')
    expect(row).to_contain_text("Truck 01")
    expect(row.locator("td").nth(3)).to_have_text("1")
    expect(page.locator("path.track")).to_have_count(1)
    expect(page.locator("path.stop")).to_have_count(1)
    expect(page.locator("path.breach.critical")).to_have_count(1)
    expect(page.locator("path.truck")).to_have_count(1)
    expect(page.locator(".leaflet-tile")).to_have_count(0)  # no tile server: none asked
    assert all(url.startswith(web.url) for url in asked), [
        u for u in asked if not u.startswith(web.url)
    ]
    shoot(page, "map-no-tiles")


def test_a_compacted_week_answers_as_before_and_past_keep_raw_days_from_its_roll_ups(
    web: Api, page: Page
) -> None:
    """The same week through the API before and after ``coldchain store compact``; then
    its days past keep_raw_days: an hour still comes, in 1-minute buckets from the
    roll-ups, the excursion at its height, and the chart says so; a damaged day is a
    clear error, not a hole."""
    from click.testing import CliRunner

    from ops.cli import main as cli

    start, spike = a_week_with_a_spike(web)
    week = {"gateway": "store-gw", "sensor": "cr1-ctrl.air", "from_ms": start,
            "to_ms": start + 7 * DAY, "points": 600}  # fmt: skip
    hour = {**week, "from_ms": spike - 30 * MIN, "to_ms": spike + 30 * MIN}
    with web.client(Role.OPERATOR) as client:
        before = [client.get("/api/series", params=p).json() for p in (week, hour)]
        done = CliRunner().invoke(cli, ["store", "compact", "--db", str(web.readings_db)])
        assert done.exit_code == 0, done.output
        days = int(re.search(r"into (\d+) sensor-days", done.output).group(1))  # type: ignore[union-attr]
        assert days >= 6 and "0 damaged chunks" in done.output  # the week's settled days
        assert [client.get("/api/series", params=p).json() for p in (week, hour)] == before
        store = SqliteStore(web.readings_db)
        try:
            now = time.time_ns() // 1_000_000
            assert store.prune(now, keep_raw_days=1, keep_rollups_days=30).raw_days >= 6
        finally:
            store.close()
        rolled = client.get("/api/series", params=hour).json()
        assert rolled["bucket_ms"] == MIN and rolled["rollups_only"]
        assert not before[1]["rollups_only"]
        assert [r[0] for r in rolled["rows"]] == [r[0] - r[0] % MIN for r in before[1]["rows"]]
        assert max(r[3] for r in rolled["rows"]) == max(r[3] for r in before[1]["rows"])
        # the CSV of that hour: a row a minute from the roll-ups, with min, max and count
        answer = client.get("/api/series.csv", params={k: hour[k] for k in hour if k != "points"})
        minutes = list(csv.DictReader(io.StringIO(answer.text)))
        assert len(minutes) == 60 and {m["q"] for m in minutes} == {"rollup_1m"}
        assert {m["count"] for m in minutes} == {"1"} and minutes[0]["quantity"] == "temp_c"
        assert max(float(m["max"]) for m in minutes) == -5.0  # the excursion, raw
        fix = in_force(web, spike)
        assert all(
            float(m["value_calibrated"]) == round(float(m["value"]) + fix, 3) for m in minutes
        )
        sign_in(page, web, Role.OPERATOR, then="/history")
        page.goto(f"{web.url}/history?s=store-gw/cr1-ctrl.air&from_ms={start}&lang=en")
        expect(page.locator("#chart")).to_have_attribute("data-loading", "false")
        expect(page.locator("#chart-status")).to_contain_text("1-minute min / mean / max (so is")
        top = page.evaluate("document.getElementById('chart').chart.yAxisRange()[1]")
        assert top >= -5.0 + in_force(web, spike)  # the excursion, from the roll-ups
        store = SqliteStore(web.readings_db)
        try:
            store._db.execute("UPDATE chunks SET minutes = x'00' WHERE day_ms <= ?", (spike,))
        finally:
            store.close()
        damaged = client.get("/api/series", params=hour)
        assert damaged.status_code == 500
        assert "coldchain store check" in damaged.json()["detail"]
