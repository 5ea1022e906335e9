"""Batches from the product: received into a room, split, labelled (a PDF sheet of QR
labels), loaded, unloaded and delivered, each a custody event with who, when and
where; through the real API on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
import segno

from alerts.repo.users import Role
from tests.api_server import Api, an_alarm

pytestmark = pytest.mark.e2e

YAK = {
    "id": "B-YAK-0501",
    "product": "Yak meat, frozen quarters",
    "profile_id": "frozen-meat",
    "quantity": 100,
    "unit": "kg",
    "origin_producer": "Gahai yak cooperative",
    "origin_village": "Gahai",
    "lot": "GH-2026-118",
    "into_location": "cr1",
    "temp_c": -19.5,
}


def test_a_batch_received_split_labelled_and_moved_to_its_buyer(api: Api, tmp_path: Path) -> None:
    with api.client(Role.OPERATOR) as warehouse, api.client(Role.DRIVER) as driver:
        received = warehouse.post("/api/batches", json=YAK)
        assert received.status_code == 201, received.text
        batch = received.json()
        assert (batch["location_id"], batch["lot"], batch["quantity"]) == (
            "cr1",
            "GH-2026-118",
            100,
        )
        (first,) = batch["journey"]
        assert (first["event"], first["handed_over_by"]) == ("into_store", "operator.test")
        assert warehouse.post("/api/batches", json=YAK).status_code == 409
        unknown = warehouse.post("/api/batches", json={**YAK, "id": "B-X", "profile_id": "caviar"})
        assert unknown.status_code == 404
        with api.client(Role.DRIVER) as not_theirs:  # receiving is an operator's
            assert not_theirs.post("/api/batches", json={**YAK, "id": "B-Y"}).status_code == 403

        too_much = warehouse.post(
            "/api/batches/B-YAK-0501/split", json={"new_id": "B-YAK-0501-B", "quantity": 100}
        )
        assert too_much.status_code == 400, too_much.text
        part = warehouse.post(
            "/api/batches/B-YAK-0501/split", json={"new_id": "B-YAK-0501-B", "quantity": 30}
        )
        assert part.status_code == 201, part.text
        assert (part.json()["split_from"], part.json()["quantity"]) == ("B-YAK-0501", 30)
        assert part.json()["location_id"] == "cr1"
        assert part.json()["trace_code"] != batch["trace_code"]
        assert warehouse.get("/api/batches/B-YAK-0501").json()["quantity"] == 70

        sheet = warehouse.get(
            "/api/labels.pdf", params=[("batch", "B-YAK-0501"), ("batch", "B-YAK-0501-B")]
        )
        assert sheet.status_code == 200 and sheet.content.startswith(b"%PDF")
        pdf = tmp_path / "labels.pdf"
        pdf.write_bytes(sheet.content)
        text = subprocess.run(
            ["pdftotext", str(pdf), "-"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        for code in (batch["trace_code"], part.json()["trace_code"]):
            assert code in text
        assert "B-YAK-0501-B" in text and "GH-2026-118" in text
        assert warehouse.get("/api/labels.pdf", params={"batch": "B-NONE"}).status_code == 404

        # the driver of truck 01 loads the split part, unloads it at the transfer station
        for to, event in (("truck-01.front", "loaded"), ("ts.frozen", "unloaded")):
            moved = driver.post(
                "/api/batches/B-YAK-0501-B/handover", json={"to_location": to, "event": event}
            )
            assert moved.status_code == 200, moved.text
        journey = warehouse.get("/api/batches/B-YAK-0501-B").json()["journey"]
        assert [(s["location_id"], s["event"], s["handed_over_by"]) for s in journey] == [
            ("cr1", "split", "operator.test"),
            ("truck-01.front", "loaded", "driver.test"),
            ("ts.frozen", "unloaded", "driver.test"),
        ]
        # once at the station, it is no longer the driver's to move
        again = driver.post(
            "/api/batches/B-YAK-0501-B/handover", json={"to_location": None, "event": "delivered"}
        )
        assert again.status_code == 403, again.text


def test_a_split_batch_s_report_begins_with_its_parent_s_journey_and_breaches(api: Api) -> None:
    with api.client(Role.OPERATOR) as warehouse, api.client(Role.QUALITY) as quality:
        in_cr2 = warehouse.get("/api/batches/B-BEEF-0414").json()["journey"][-1]["from_ms"]
        an_alarm(api, start_ms=in_cr2 + 1)  # cold room 2 warms up with the beef
        with api.client(Role.DRIVER) as driver:  # then the beef leaves on truck 01
            loaded = driver.post(
                "/api/batches/B-BEEF-0414/handover",
                json={"to_location": "truck-01.rear", "event": "loaded"},
            )
            assert loaded.status_code == 200, loaded.text
        part = warehouse.post(  # a part is sold off the truck
            "/api/batches/B-BEEF-0414/split", json={"new_id": "B-BEEF-0414-S", "quantity": 10}
        )
        assert part.status_code == 201, part.text
        split_at = part.json()["journey"][0]["from_ms"]
        parent = quality.get("/api/batches/B-BEEF-0414/report").json()
        child = quality.get("/api/batches/B-BEEF-0414-S/report").json()
    legs = [(s["location_id"], s["event"]) for s in child["stays"]]
    assert legs == [
        ("cr2", "into_store"),
        ("truck-01.rear", "loaded"),
        ("truck-01.rear", "split"),
    ]
    assert child["stays"][1]["until_ms"] == split_at  # the parent's stay, up to the split
    assert parent["stays"][1]["until_ms"] is None  # the parent's own goes on
    # cold room 2's breach, before the part had its own id, is in its report
    assert [b["location_id"] for b in child["breaches"]] == ["cr2"]
    assert child["breaches"] == parent["breaches"]
    assert child["verdict"]["outcome"] == parent["verdict"]["outcome"]


def label_photo(text: str, *, kind: str = "JPEG", turn: float = 8.0) -> bytes:
    """A phone's photo of a label: the QR code on a larger grey, noisy background, a
    little turned, saved as the phone saves it."""
    from PIL import Image, ImageFilter

    code = io.BytesIO()
    segno.make(text, error="m").save(code, kind="png", scale=10, border=4)
    qr = Image.open(io.BytesIO(code.getvalue())).convert("L")
    photo = Image.effect_noise((1600, 1200), 24).point(lambda v: 90 + v // 3)
    photo.paste(qr.rotate(turn, expand=True, fillcolor=255), (500, 300))
    out = io.BytesIO()
    photo.filter(ImageFilter.GaussianBlur(0.8)).convert("RGB").save(out, kind, quality=85)
    return out.getvalue()


def test_a_photo_of_a_label_is_read_by_the_server_for_phones_that_cannot(api: Api) -> None:
    address = f"{api.url}/t/ABCDEFGHJKLM"
    with api.client(Role.DRIVER) as driver:
        for kind in ("JPEG", "PNG", "WEBP"):
            reply = driver.post(
                "/api/scan",
                files={"image": (f"label.{kind.lower()}", label_photo(address, kind=kind))},
            )
            assert reply.status_code == 200, (kind, reply.text)
            assert reply.json() == {"text": address}
        blank = driver.post("/api/scan", files={"image": ("x.png", _blank())})
        assert blank.status_code == 422 and "no QR code" in blank.text
        text = driver.post("/api/scan", files={"image": ("x.jpg", b"not a picture")})
        assert text.status_code == 415
    with api.client(Role.VIEWER) as viewer:
        assert viewer.post("/api/scan", files={"image": ("x.jpg", b"")}).status_code == 403


def _blank() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (640, 480), 200).save(out, "PNG")
    return out.getvalue()
