"""Batches and sensors from a spreadsheet (CSV in UTF-8 or GB 18030, Excel .xlsx): through
the API on SQLite and PostgreSQL, the CLI, and the page (Chromium). All rows or none;
every problem named by file, row and column; a sheet imported twice changes nothing."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import Workbook
from playwright.sync_api import Page, expect

from alerts.repo.users import Role
from tests.api_server import Api, user_of
from tests.browser import sign_in

pytestmark = pytest.mark.e2e

BATCHES = (
    "id,product,profile_id,quantity,unit,origin_producer,origin_village,lot,into_location,temp_c\n"
    "B-IMP-001,Chilled yak meat,chilled-meat,120,kg,Hongyuan cooperative,Xiangda,L-117,cr2,2.5\n"
    "B-IMP-002,Frozen mutton,frozen-meat,80,kg,Gahai household,,L-118,cr1,\n"
)


def xlsx(rows: list[list[object]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def sheet(name: str, data: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"file": (name, data, "application/octet-stream")}


def test_batches_from_a_csv_are_received_once_and_a_second_import_changes_nothing(
    api: Api,
) -> None:
    with api.client(Role.OPERATOR) as operator:
        dry = operator.post(
            "/api/batches/import", files=sheet("b.csv", BATCHES.encode()), data={"dry_run": "true"}
        ).json()
        assert dry == {"added": ["B-IMP-001", "B-IMP-002"], "unchanged": [], "dry_run": True}
        assert operator.get("/api/batches/B-IMP-001").status_code == 404
        first = operator.post("/api/batches/import", files=sheet("b.csv", BATCHES.encode()))
        assert first.status_code == 200, first.text
        assert first.json()["added"] == ["B-IMP-001", "B-IMP-002"]
        again = operator.post("/api/batches/import", files=sheet("b.csv", BATCHES.encode()))
        assert again.json() == {
            "added": [],
            "unchanged": ["B-IMP-001", "B-IMP-002"],
            "dry_run": False,
        }
        batch = operator.get("/api/batches/B-IMP-001").json()
    assert (batch["location_id"], batch["lot"], batch["quantity"]) == ("cr2", "L-117", 120.0)
    assert batch["journey"][0]["handed_over_by"] == user_of(Role.OPERATOR)


def test_a_gb18030_csv_and_an_excel_workbook_are_read_alike(api: Api) -> None:
    chinese = (
        "id,product,profile_id,quantity,origin_producer,origin_village,into_location\n"
        "B-IMP-ZH,冷鲜牦牛肉,chilled-meat,50,红原牦牛合作社,香达村,cr2\n"
    ).encode("gb18030")
    workbook = xlsx(
        [
            ["id", "product", "profile_id", "quantity", "origin_producer", "into_location"],
            [1001, "Frozen yak meat", "frozen-meat", 75, "Gahai cooperative", "cr1"],
        ]
    )
    with api.client(Role.OPERATOR) as operator:
        for name, data in (("zh.csv", chinese), ("sheet.xlsx", workbook)):
            reply = operator.post("/api/batches/import", files=sheet(name, data))
            assert reply.status_code == 200, reply.text
        zh = operator.get("/api/batches/B-IMP-ZH").json()
        from_excel = operator.get("/api/batches/1001").json()  # 1001.0 in the cell
    assert (zh["product"], zh["origin_village"]) == ("冷鲜牦牛肉", "香达村")
    assert (from_excel["quantity"], from_excel["location_id"]) == (75.0, "cr1")


def test_a_sheet_with_mistakes_is_refused_whole_naming_each_row_and_column(api: Api) -> None:
    bad = (
        "id,product,profile_id,quantity,origin_producer,into_location,colour\n"
        "B-OK-1,Yak,chilled-meat,10,Gahai,cr2,\n"
        "B-BAD-2,Yak,chilled-meat,lots,Gahai,cr2,\n"
        "B-BAD-3,Yak,no-such-profile,10,Gahai,cr99,\n"
        "B-BAD-4,Yak,chilled-meat,10,Gahai,cr2,red\n"
    )
    with api.client(Role.OPERATOR) as operator:
        reply = operator.post("/api/batches/import", files=sheet("bad.csv", bad.encode()))
        assert reply.status_code == 400
        problems = reply.json()["detail"]
        assert any(p.startswith("bad.csv row 3, column quantity:") for p in problems), problems
        assert any(p.startswith("bad.csv row 5, column colour:") for p in problems), problems
        fixed = bad.replace("lots", "10").replace(",red", ",")
        reply = operator.post("/api/batches/import", files=sheet("bad.csv", fixed.encode()))
        assert reply.status_code == 400
        assert reply.json()["detail"] == [
            "bad.csv row 4, column into_location: no location 'cr99' at your sites",
            "bad.csv row 4, column profile_id: no profile 'no-such-profile'",
        ]
        assert operator.get("/api/batches/B-OK-1").status_code == 404  # none written
        empty = operator.post("/api/batches/import", files=sheet("e.csv", b""))
        assert empty.status_code == 400 and "no header row" in empty.text


def test_sensors_from_a_sheet_are_assigned_and_a_moved_one_keeps_its_history(api: Api) -> None:
    first = "gateway,sensor,location,role\nstore-gw,cr1-probe2.temp,cr1,product\n"
    moved = "gateway,sensor,location,role\nstore-gw,cr1-probe2.temp,cr2,product\n"
    with api.client(Role.ADMIN) as admin:
        for text, want in ((first, ["store-gw/cr1-probe2.temp"]), (first, [])):
            reply = admin.post("/api/sensors/import", files=sheet("s.csv", text.encode()))
            assert reply.status_code == 200, reply.text
            assert reply.json()["added"] == want
        reply = admin.post(
            "/api/sensors/import",
            files=sheet("s.xlsx", xlsx([line.split(",") for line in moved.splitlines()])),
        )
        assert reply.json()["added"] == ["store-gw/cr1-probe2.temp"]
        wrong = admin.post(
            "/api/sensors/import",
            files=sheet(
                "w.csv", b"gateway,sensor,location\nno-gw,x.temp,cr1\nstore-gw,y.temp,nowhere\n"
            ),
        )
        assert wrong.status_code == 400
        assert wrong.json()["detail"] == [
            "w.csv row 2, column gateway: no gateway 'no-gw'",
            "w.csv row 3, column location: no location 'nowhere'",
        ]
        county = admin.get("/api/setup").json()
        trail = admin.get(
            "/api/audit", params={"entity": "sensor", "entity_id": "store-gw/cr1-probe2.temp"}
        ).json()
    where = {
        loc["id"]: [s["sensor"] for s in loc["sensors"]]
        for site in county["sites"]
        for loc in site["locations"]
    }
    assert "store-gw/cr1-probe2.temp" in where["cr2"]
    assert "store-gw/cr1-probe2.temp" not in where["cr1"]
    assert [r["new_value"]["location"] for r in trail if r["action"] == "sensor.assign"] == [
        "cr2",
        "cr1",
    ]  # newest first: the move, then the first assignment


def test_the_cli_imports_batches_and_sensors_and_says_what_is_wrong(
    api: Api, tmp_path: Path
) -> None:
    db_url = str(api.engine.url.render_as_string(hide_password=False))
    batches = tmp_path / "batches.csv"
    batches.write_text(BATCHES)
    sensors = tmp_path / "sensors.xlsx"
    sensors.write_bytes(
        xlsx([["gateway", "sensor", "location"], ["ts-gw", "ts-th2.temp", "ts.chilled"]])
    )
    run = [sys.executable, "-m", "ops.cli", "import"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*run, *args, "--actor", "li.wei", "--db-url", db_url],
            capture_output=True,
            text=True,
            timeout=120,
        )

    dry = cli("batches", str(batches), "--dry-run")
    assert dry.returncode == 0 and "2 would add" in dry.stdout, dry.stderr
    done = cli("batches", str(batches))
    assert done.returncode == 0 and "2 added, 0 already" in done.stdout, done.stderr
    assert "0 added, 2 already" in cli("batches", str(batches)).stdout
    assert "1 added" in cli("sensors", str(sensors)).stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("gateway,sensor,location\nts-gw,z.temp,nowhere\n")
    refused = cli("sensors", str(bad))
    assert refused.returncode == 1
    assert "bad.csv row 2, column location: no location 'nowhere'" in refused.stderr
    with api.client(Role.VIEWER) as viewer:
        assert (
            viewer.get("/api/batches/B-IMP-002").json()["journey"][0]["handed_over_by"] == "li.wei"
        )


def test_an_operator_imports_a_sheet_of_batches_on_the_receive_page(
    web: Api, page: Page, tmp_path: Path
) -> None:
    path = tmp_path / "batches.csv"
    path.write_text(BATCHES)
    sign_in(page, web, Role.OPERATOR, then="/receive")
    form = page.locator("#import-batches")
    form.locator("input[name=file]").set_input_files(str(path))
    form.locator("button[type=submit]").click()
    page.wait_for_url(f"{web.url}/batches")
    expect(page.locator("main")).to_contain_text("B-IMP-001")
    expect(page.locator("main")).to_contain_text("B-IMP-002")
    page.goto(f"{web.url}/receive")
    path.write_text(BATCHES.replace(",cr1,", ",cr404,").replace("B-IMP-00", "B-IMP-10"))
    form.locator("input[name=file]").set_input_files(str(path))
    form.locator("button[type=submit]").click()
    expect(form.locator(".form-error")).to_contain_text("row 3, column into_location")
