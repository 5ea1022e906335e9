"""Calibrations recorded with their certificate files, through the API (SQLite and
PostgreSQL), the CLI and the page (Chromium); the sensors by due date."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from alerts.repo.users import Role
from tests.api_server import Api, user_of
from tests.browser import shoot, sign_in

pytestmark = pytest.mark.e2e

DAY_MS = 86_400_000
#: a certificate as a scanner writes it: a PDF (the type is told by its first bytes)
CERTIFICATE = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def fields(sensor: str = "cr2-th.temp", **changes: str) -> dict[str, str]:
    now = time.time_ns() // 1_000_000
    return {
        "gateway": "store-gw",
        "sensor": sensor,
        "calibrated_ms": str(now - 60_000),
        "reference_instrument": "Fluke 1524 with 5615 PRT",
        "correction_c": "-0.25",
        "certificate": "QH-JL-2026-0457",
        "next_due_ms": str(now + 365 * DAY_MS),
        **changes,
    }


def test_a_calibration_with_its_certificate_file_is_kept_served_and_audited(api: Api) -> None:
    with api.client(Role.QUALITY) as quality:
        before = {(d["gateway"], d["sensor"]): d for d in quality.get("/api/calibrations").json()}
        reply = quality.post(
            "/api/calibrations",
            data=fields(),
            files={"file": ("QH-JL-2026-0457.pdf", CERTIFICATE, "application/pdf")},
        )
        assert reply.status_code == 201, reply.text
        cal = reply.json()
        assert (cal["sensor"], cal["correction_c"]) == ("cr2-th.temp", -0.25)

        kept = quality.get(f"/api/calibrations/{cal['id']}/certificate")
        assert kept.status_code == 200 and kept.content == CERTIFICATE
        assert kept.headers["content-type"] == "application/pdf"
        assert kept.headers["content-disposition"].startswith("attachment;")
        assert kept.headers["x-content-type-options"] == "nosniff"

        due = {(d["gateway"], d["sensor"]): d for d in quality.get("/api/calibrations").json()}
        mine = due[("store-gw", "cr2-th.temp")]
        assert (mine["state"], mine["latest"]["id"], mine["certificate_file"]) == (
            "valid",
            cal["id"],
            True,
        )
        assert set(due) == set(before)  # every sensor in use, once
        order = [d["state"] for d in due.values()]
        assert order == sorted(order, key=lambda state: state != "never")  # never first
        dues = [d["latest"]["next_due_ms"] for d in due.values() if d["latest"]]
        assert dues == sorted(dues)

        trail = quality.get(
            "/api/audit", params={"entity": "sensor", "entity_id": "store-gw/cr2-th.temp"}
        ).json()
    (row,) = [
        r
        for r in trail
        if r["action"] == "calibration.record" and r["actor"] == user_of(Role.QUALITY)
    ]
    assert row["new_value"]["certificate_sha256"] == hashlib.sha256(CERTIFICATE).hexdigest()


def test_a_calibration_that_cannot_be_right_is_refused_and_nothing_is_written(api: Api) -> None:
    now = time.time_ns() // 1_000_000
    page = b"<html><script>alert(1)</script></html>"
    with api.client(Role.QUALITY) as quality:
        count = len(quality.get("/api/audit", params={"limit": 5000}).json())
        cases = [
            (fields(), {"file": ("cert.html", page, "application/pdf")}, 415),
            (
                fields(),
                {"file": ("big.pdf", b"%PDF-" + b"0" * (10 * 2**20), "application/pdf")},
                413,
            ),
            (fields(calibrated_ms=str(now + DAY_MS)), None, 400),
            (fields(next_due_ms=str(now - DAY_MS)), None, 400),
            ({**fields(), "gateway": "no-such-gw"}, None, 400),
            (fields(correction_c="40"), None, 422),
        ]
        for data, files, code in cases:
            reply = quality.post("/api/calibrations", data=data, files=files)
            assert reply.status_code == code, (data, reply.text)
        assert len(quality.get("/api/audit", params={"limit": 5000}).json()) == count
        # a form another site's page sends is refused, whatever the browser sends with it
        for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            forged = quality.post("/api/calibrations", data=fields(), headers=headers)
            assert forged.status_code == 403, headers
        own = urlsplit(api.url).netloc
        assert (
            quality.post(
                "/api/calibrations",
                data=fields(correction_c="40"),
                headers={"Origin": f"http://{own}"},
            ).status_code
            == 422
        )  # its own pages pass (and then the body is checked)
        assert len(quality.get("/api/audit", params={"limit": 5000}).json()) == count
    with api.client(Role.OPERATOR) as operator:  # operators see the list, do not record
        assert operator.get("/api/calibrations").status_code == 200
        assert operator.post("/api/calibrations", data=fields()).status_code == 403


def test_a_certificate_is_not_served_to_a_user_of_another_site(api: Api) -> None:
    with api.client(Role.QUALITY) as quality:
        cal = quality.post(
            "/api/calibrations",
            data=fields(),
            files={"file": ("c.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")},
        ).json()
    with api.client(Role.QUALITY, other=True) as other:
        assert other.get(f"/api/calibrations/{cal['id']}/certificate").status_code == 404
        listed = other.get("/api/calibrations").json()
        assert listed and {d["site_id"] for d in listed} == {"transfer-station"}


def test_the_cli_records_a_calibration_with_its_file_and_lists_what_is_due(
    api: Api, tmp_path: Path
) -> None:
    certificate = tmp_path / "QH-JL-2026-0458.pdf"
    certificate.write_bytes(CERTIFICATE)
    db_url = str(api.engine.url.render_as_string(hide_password=False))
    run = [sys.executable, "-m", "ops.cli", "calibrations"]
    done = subprocess.run(
        [*run, "record", "store-gw/cr1-th.temp", "--offset", "0.15", "--reference", "Fluke 1524",
         "--valid-until", "2099-12-01", "--certificate-no", "QH-JL-2026-0458",
         "--certificate", str(certificate), "--actor", "zhang.metrology", "--db-url", db_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "store-gw/cr1-th.temp recorded (+0.15 °C)" in done.stdout
    wrong = subprocess.run(
        [*run, "record", "store-gw/cr1-th.temp", "--offset", "0.1", "--reference", "x",
         "--valid-until", "2000-01-01", "--actor", "zhang.metrology", "--db-url", db_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert wrong.returncode == 1 and "valid until must be after" in wrong.stderr
    listed = subprocess.run(
        [*run, "due", "--within-days", "36500", "--db-url", db_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(line.startswith("store-gw/cr1-th.temp\tcr1\tdue 2099-12-01") for line in lines)
    with api.client(Role.VIEWER) as viewer:
        due = {(d["gateway"], d["sensor"]): d for d in viewer.get("/api/calibrations").json()}
    assert due[("store-gw", "cr1-th.temp")]["certificate_file"] is True


def test_quality_staff_record_a_calibration_with_its_certificate_on_the_page(
    web: Api, page: Page, tmp_path: Path
) -> None:
    certificate = tmp_path / "QH-JL-2026-0459.pdf"
    certificate.write_bytes(CERTIFICATE)
    sign_in(page, web, Role.QUALITY, then="/calibrations")
    row = page.locator('tr[data-cal-sensor="store-gw/ct-th.temp"]')
    row.locator("button[data-fill]").click()
    form = page.locator("#calibration-form")
    expect(form.locator("input[name=sensor]")).to_have_value("ct-th.temp")
    today = time.strftime("%Y-%m-%d")
    form.locator("input[name=calibrated_ms]").fill(today)
    form.locator("input[name=reference_instrument]").fill("Fluke 1524")
    form.locator("input[name=correction_c]").fill("0.3")
    form.locator("input[name=certificate]").fill("QH-JL-2026-0459")
    form.locator("input[name=next_due_ms]").fill(f"{int(today[:4]) + 1}{today[4:]}")
    form.locator("input[name=file]").set_input_files(str(certificate))
    form.locator("button[type=submit]").click()
    expect(row.locator(".state")).to_have_text("Valid")
    expect(row).to_contain_text("+0.30 °C")
    expect(row).to_contain_text("QH-JL-2026-0459")
    link = row.locator("a.certificate").get_attribute("href")
    assert link is not None
    assert page.request.get(f"{web.url}{link}").body() == CERTIFICATE
    shoot(page, "calibrations-en")
