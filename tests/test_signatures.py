"""Electronic signatures (21 CFR Part 11, EU Annex 11), in Chromium against the real API:
quality staff release a batch by entering their password again; the page and the PDF
show the printed name, the time and the meaning; verify passes; changing the signed
record or taking rows off the trail's end makes verify fail."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import text

from alerts.audit import write_checkpoint
from alerts.repo.users import Role
from tests.api_server import PASSWORD, Api, an_alarm, serve, user_of
from tests.browser import sign_in
from tests.harness import Broker

BATCH = "B-BEEF-0414"


@pytest.fixture
def audited(
    tmp_path: Path, running_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Api]:
    """The API and pages on SQLite, with an audit key and an anchor file."""
    monkeypatch.setenv("COLDCHAIN_AUDIT_KEY", "an audit key of at least 32 characters")
    url = f"sqlite:///{tmp_path / 'alerts.sqlite'}"
    with serve(url, tmp_path, running_broker, audit_anchor=tmp_path / "anchor.jsonl") as api:
        yield api


def pdf_text(page: Page, tmp_path: Path) -> str:
    with page.expect_download() as download:
        page.click("#pdf")
    pdf = tmp_path / "report.pdf"
    download.value.save_as(pdf)
    return subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def verify(api: Api) -> dict[str, object]:
    with api.client(Role.QUALITY) as quality:
        found: dict[str, object] = quality.get("/api/audit/verify").json()
        return found


def test_quality_staff_sign_a_release_that_the_pdf_shows_and_verify_guards(
    audited: Api, page: Page, tmp_path: Path
) -> None:
    an_alarm(audited)  # the batch's record has a breach, acknowledged or not
    sign_in(page, audited, Role.QUALITY, then=f"/batches/{BATCH}")
    expect(page.locator("#signatures tbody")).to_contain_text("Not signed yet")
    form = page.locator("#sign-form")
    form.locator("select[name=meaning]").select_option("released")
    form.locator("input[name=comment]").fill("excursion reviewed, product within limits")
    form.locator("input[name=password]").fill("not my password")
    form.locator("button[type=submit]").click()
    expect(form.locator(".form-error")).to_contain_text("password is not right")
    form.locator("input[name=password]").fill(PASSWORD)
    form.locator("button[type=submit]").click()
    row = page.locator("#signatures tbody tr.meaning-released")
    expect(row).to_be_visible()
    expect(row.locator(".signer")).to_contain_text(user_of(Role.QUALITY))
    expect(row.locator(".meaning")).to_have_text("Released")
    # the time in the county's zone with its date, whatever the browser's zone (UTC here)
    expect(row.locator("time")).to_contain_text("GMT+8")
    expect(row.locator("time")).to_contain_text("/20")
    text_en = pdf_text(page, tmp_path)
    assert "Released" in text_en and user_of(Role.QUALITY) in text_en
    assert "excursion reviewed" in text_en and "(UTC+08:00)" in text_en
    with audited.client(Role.QUALITY) as quality:
        (signature,) = quality.get(f"/api/batches/{BATCH}/signatures").json()
        assert signature["meaning"] == "released" and signature["matches_record"] is True
        trail = quality.get("/api/audit", params={"entity": "batch", "entity_id": BATCH}).json()
        assert trail[0]["action"] == "batch.sign"
        assert trail[0]["new_value"]["record_sha256"] == signature["record_sha256"]
    assert signature["record_sha256"][:16] in text_en
    write_checkpoint(audited.engine, Path(str(audited.app.state.services.settings.audit_anchor)))
    assert verify(audited)["intact"] is True

    # the signed record changed behind the application's back: verify fails
    with audited.engine.begin() as conn:
        conn.execute(text("UPDATE signatures SET meaning = 'rejected'"))
    found = verify(audited)
    assert found["intact"] is False
    assert any(str(p).startswith("signatures 1:") for p in found["problems"])  # type: ignore[union-attr]
    with audited.engine.begin() as conn:
        conn.execute(text("UPDATE signatures SET meaning = 'released'"))
    assert verify(audited)["intact"] is True
    with audited.engine.begin() as conn:
        conn.execute(text("UPDATE breaches SET max_value = 3.0"))
    assert any(str(p).startswith("breaches ") for p in verify(audited)["problems"])  # type: ignore[union-attr]


def test_deleting_the_trail_s_last_rows_fails_verify_against_the_checkpoint(
    audited: Api,
) -> None:
    with audited.client(Role.QUALITY) as quality:
        signed = quality.post(
            f"/api/batches/{BATCH}/signatures",
            json={"meaning": "held", "password": PASSWORD, "comment": "waiting for the lab"},
        )
        assert signed.status_code == 201, signed.text
    anchor = Path(str(audited.app.state.services.settings.audit_anchor))
    assert write_checkpoint(audited.engine, anchor) is not None
    assert verify(audited)["intact"] is True
    with audited.engine.begin() as conn:
        last = conn.execute(text("SELECT MAX(id) FROM audit_log")).scalar_one()
        conn.execute(text("DELETE FROM audit_log WHERE id = :last"), {"last": last})
    found = verify(audited)
    assert found["intact"] is False
    assert any("no longer holds" in str(p) for p in found["problems"])  # type: ignore[union-attr]


def test_a_wrong_password_signs_nothing_and_counts_as_a_failed_sign_in(audited: Api) -> None:
    with httpx.Client(base_url=audited.url, timeout=20) as client:
        client.headers["Authorization"] = f"Bearer {audited.token(Role.QUALITY)}"
        for _ in range(5):
            wrong = client.post(
                f"/api/batches/{BATCH}/signatures",
                json={"meaning": "released", "password": "guess"},
            )
            assert wrong.status_code == 400
        held = client.post(
            f"/api/batches/{BATCH}/signatures", json={"meaning": "released", "password": PASSWORD}
        )
        assert held.status_code == 429
        assert client.get(f"/api/batches/{BATCH}/signatures").json() == []
