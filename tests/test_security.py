"""Security by default, tried as an attacker would against the real API under uvicorn
(docs/design-security.md): sign-in throttling that locks nobody out, shared by replicas;
request bodies bounded before parsing; passwords by the rule on every path."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from alerts.db import AuditRow, reading
from alerts.repo.users import Role
from api.app import create_app
from api.live import STREAMS_PER_SESSION
from api.settings import ApiSettings
from tests.api_server import PASSWORD, Api, running, serve, user_of
from tests.harness import Broker

PROXY = "127.0.0.1"  # the tests' client stands in for the county's reverse proxy


@pytest.fixture
def behind_proxy(db_url: str, tmp_path: Path, running_broker: Broker) -> Iterator[Api]:
    """The API behind a trusted reverse proxy, on SQLite and on PostgreSQL."""
    with serve(db_url, tmp_path, running_broker, trusted_proxies=PROXY) as served:
        yield served


def sign_in(client: httpx.Client, name: str, password: str, via: str | None) -> httpx.Response:
    headers = {"X-Forwarded-For": via} if via else {}
    return client.post(
        "/api/auth/login", json={"username": name, "password": password}, headers=headers
    )


def refusals(api: Api) -> list[dict[str, str]]:
    with reading(api.engine) as s:
        rows = s.execute(select(AuditRow).where(AuditRow.action == "auth.refused")).scalars()
        return [{"name": r.entity_id, **json.loads(r.new_value or "{}")} for r in rows]


@pytest.mark.e2e
def test_a_guesser_slows_down_only_their_own_address_and_the_right_person_signs_in_elsewhere(
    behind_proxy: Api,
) -> None:
    name = user_of(Role.OPERATOR)
    with httpx.Client(base_url=behind_proxy.url, timeout=20) as client:
        for _ in range(5):
            assert sign_in(client, name, "not the password", "203.0.113.7").status_code == 401
        held = sign_in(client, name, PASSWORD, "203.0.113.7")
        assert held.status_code == 429 and int(held.headers["Retry-After"]) >= 1
        # the same person on their phone, and a colleague behind the guesser's address
        assert sign_in(client, name, PASSWORD, "198.51.100.20").status_code == 200
        colleague = sign_in(client, user_of(Role.VIEWER), PASSWORD, "203.0.113.7")
        assert colleague.status_code == 200
    reasons = [(r["name"], r["address"], r["reason"]) for r in refusals(behind_proxy)]
    assert reasons == [(name, "203.0.113.7", "wrong password")] * 5 + [
        (name, "203.0.113.7", "held back after repeated failures")
    ]


@pytest.mark.e2e
def test_only_the_address_a_trusted_proxy_adds_is_believed(web: Api, tmp_path: Path) -> None:
    name = user_of(Role.OPERATOR)
    with httpx.Client(base_url=web.url, timeout=20) as client:
        # no proxy is trusted: forged headers change nothing, the peer is who asks
        for n in range(5):
            forged = f"198.51.100.{n}"
            assert sign_in(client, name, "not the password", forged).status_code == 401
        assert sign_in(client, name, PASSWORD, "198.51.100.99").status_code == 429
    assert {r["address"] for r in refusals(web)} == {"127.0.0.1"}
    settings = web.app.state.services.settings.model_copy(update={"trusted_proxies": PROXY})
    with (
        running(create_app(settings)) as url,
        httpx.Client(base_url=url, timeout=20) as client,
    ):
        # behind the proxy: what the client wrote stands left of what the proxy added
        sign_in(client, "nobody.here", "x", "192.0.2.66, 203.0.113.50")
        assert refusals(web)[-1]["address"] == "203.0.113.50"
        sign_in(client, "nobody.here", "x", "not an address")
        assert refusals(web)[-1]["address"] == "127.0.0.1"


@pytest.mark.e2e
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # 55 hashes: once is enough
def test_a_sprayer_of_many_names_from_one_address_is_held_back_there(
    behind_proxy: Api,
) -> None:
    with httpx.Client(base_url=behind_proxy.url, timeout=20) as client:
        codes = [
            sign_in(client, f"guess.{n}", "password1234", "203.0.113.9").status_code
            for n in range(55)
        ]
        assert codes[:50] == [401] * 50 and 429 in codes[50:]
        assert sign_in(client, user_of(Role.VIEWER), PASSWORD, "198.51.100.3").status_code == 200


@pytest.mark.e2e
def test_two_replicas_count_the_same_failures(behind_proxy: Api) -> None:
    name = user_of(Role.QUALITY)
    settings: ApiSettings = behind_proxy.app.state.services.settings
    with (
        running(create_app(settings)) as second,
        httpx.Client(base_url=behind_proxy.url, timeout=20) as one,
        httpx.Client(base_url=second, timeout=20) as two,
    ):
        for _ in range(5):
            assert sign_in(one, name, "not the password", "203.0.113.8").status_code == 401
        assert sign_in(two, name, PASSWORD, "203.0.113.8").status_code == 429


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


@pytest.mark.e2e
def test_a_huge_body_is_refused_before_it_is_read(web: Api) -> None:
    declared = _raw(
        web.url,
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 67108864\r\n\r\n{",
    )
    assert declared.startswith(b"HTTP/1.1 413")
    body = b'{"username": "' + b"a" * 200_000 + b'", "password": "x"}'
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part)
        for part in (body[i : i + 8192] for i in range(0, len(body), 8192))
    )
    streamed = _raw(
        web.url,
        b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n",
    )
    assert streamed.startswith(b"HTTP/1.1 413")
    with httpx.Client(base_url=web.url, timeout=20) as client:  # still serving
        assert sign_in(client, user_of(Role.VIEWER), PASSWORD, None).status_code == 200


@pytest.mark.e2e
def test_an_upload_may_be_larger_than_a_json_body_but_not_without_bound(web: Api) -> None:
    with web.client(Role.QUALITY) as quality:
        big = b"%PDF-1.4\n" + b"0" * (11 * 1024 * 1024)
        kept = quality.post(
            "/api/calibrations",
            data={"gateway": "store-gw", "sensor": "nope"},
            files={"file": ("c.pdf", big, "application/pdf")},
        )
        assert kept.status_code != 413  # refused for its fields, not its size
        token = quality.headers["Authorization"]
    # past the bound: answered before the body is sent (a client still sending it would
    # see the connection close under it)
    huge = _raw(
        web.url,
        b"POST /api/calibrations HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n"
        % (token.encode(), 2 * len(big)),
    )
    assert huge.startswith(b"HTTP/1.1 413")


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("password", "why"),
    [("aaaaaaaaaaaa", "too easy"), ("1qaz2wsx3edc", "common"), ("driver.ma.2026", "user name")],
)
def test_every_path_that_sets_a_password_applies_the_rule(
    web: Api, password: str, why: str
) -> None:
    with web.client(Role.ADMIN) as admin:
        made = admin.post(
            "/api/users", json={"username": "driver.ma", "password": password, "role": "driver"}
        )
        assert made.status_code == 400 and why in made.text
    with web.client(Role.VIEWER) as viewer:
        own = viewer.post(
            "/api/auth/password",
            json={
                "current_password": PASSWORD,
                "new_password": password.replace("driver.ma", "viewer.test"),
            },
        )
        assert own.status_code == 400 and why in own.text


@pytest.mark.e2e
def test_every_answer_carries_the_security_headers_and_no_page_has_an_inline_script(
    web: Api,
) -> None:
    with web.client(Role.ADMIN) as admin:
        answers = [
            admin.get(path)
            for path in (
                "/login",
                "/board",
                "/setup",
                "/batches/B-BEEF-0414",
                "/trace/ABCDEFGHJKLM",
                "/api/sites",
                "/api/docs",
                "/static/app.js",
                "/no/such/page",
            )
        ]
        answers.append(admin.post("/api/auth/login", content=b"{" * 70_000))
    for answer in answers:
        headers = answer.headers
        where = f"{answer.request.url.path} ({answer.status_code})"
        csp = headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, where
        assert (
            "unsafe-eval" not in csp
            and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
        )
        assert headers["x-frame-options"] == "DENY", where
        assert headers["x-content-type-options"] == "nosniff", where
        assert headers["referrer-policy"] == "same-origin", where
        assert "strict-transport-security" not in headers, where  # not behind TLS here
        if headers["content-type"].startswith("text/html"):
            assert "<script>" not in answer.text, where  # only <script src> and JSON data
    assert [a.status_code for a in answers][-1] == 413


@pytest.mark.e2e
def test_behind_tls_browsers_are_told_to_keep_to_https(
    db_url: str, tmp_path: Path, running_broker: Broker
) -> None:
    with serve(db_url, tmp_path, running_broker, secure_cookies=True) as api:
        answer = httpx.get(f"{api.url}/login", timeout=20)
        assert answer.headers["strict-transport-security"].startswith("max-age=")


@pytest.mark.e2e
def test_the_api_docs_work_without_internet(web: Api, page: Page) -> None:
    outside: list[str] = []
    page.on(
        "request",
        lambda r: outside.append(r.url) if not r.url.startswith(web.url) else None,
    )
    page.goto(f"{web.url}/api/docs")
    expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=30_000)
    expect(page.locator('.opblock-summary-path[data-path="/api/auth/login"]')).to_have_count(1)
    assert outside == []


@pytest.mark.e2e
def test_a_session_holds_a_bounded_number_of_live_streams(web: Api) -> None:
    token = web.token(Role.VIEWER)
    auth = {"Authorization": f"Bearer {token}"}
    with contextlib.ExitStack() as streams, httpx.Client(base_url=web.url, timeout=20) as c:
        opened = [
            streams.enter_context(c.stream("GET", "/api/live", headers=auth))
            for _ in range(STREAMS_PER_SESSION)
        ]
        assert [s.status_code for s in opened] == [200] * STREAMS_PER_SESSION
        assert c.get("/api/live", headers=auth).status_code == 429
        with (
            web.client(Role.VIEWER) as another_session,
            another_session.stream("GET", "/api/live") as theirs,
        ):
            assert theirs.status_code == 200
        opened[0].close()
        deadline = time.monotonic() + 10
        while True:  # the server sees the stream closed at its next write or poll
            with c.stream("GET", "/api/live", headers=auth) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "a closed stream was never let go"
            time.sleep(0.5)
