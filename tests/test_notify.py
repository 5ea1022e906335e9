"""Notification channels against real local servers (an HTTP server, aiosmtpd's SMTP
server) and the durable outbox on SQLite and PostgreSQL: each notification sent once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from aiosmtpd.controller import Controller

from alerts.db import make_engine, upgrade
from alerts.notify import (
    AppriseChannel,
    DeliveryError,
    Email,
    Message,
    Webhook,
    deliver_due,
    enqueue,
    sign,
)
from tests.harness import free_port

MIN = 60_000
T0 = 1_795_392_000_000
MESSAGE = Message(
    "CRITICAL cold room 1 above -15 °C", "冷库1温度超标: -12.0 °C since 08:45", "critical", "a17"
)


class Receiver:
    """A real HTTP server on 127.0.0.1 that records what it is sent."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


class Inbox:
    def __init__(self) -> None:
        self.mails: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, _server, _session, envelope):  # type: ignore[no-untyped-def]
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def test_webhook_is_signed_with_the_shared_secret(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLDCHAIN_WEBHOOK_SECRET", "s3cret")
    Webhook(receiver.url, "COLDCHAIN_WEBHOOK_SECRET").send(MESSAGE, ("ops-room",))
    headers, body = receiver.requests[0]
    assert json.loads(body)["alarm_id"] == "a17"
    stamp = headers["x-coldchain-timestamp"]
    assert headers["x-coldchain-signature"] == sign(b"s3cret", stamp, body)
    assert headers["x-coldchain-signature"] != sign(b"wrong", stamp, body)


def test_webhook_without_its_secret_is_not_sent(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLDCHAIN_WEBHOOK_SECRET", raising=False)
    with pytest.raises(DeliveryError, match="COLDCHAIN_WEBHOOK_SECRET"):
        Webhook(receiver.url, "COLDCHAIN_WEBHOOK_SECRET").send(MESSAGE, ())
    assert receiver.requests == []


def test_email_goes_through_a_real_smtp_server(smtp: tuple[Controller, Inbox]) -> None:
    controller, inbox = smtp
    Email("127.0.0.1", controller.port, "coldchain@county.example").send(
        MESSAGE, ("duty@county.example", "quality@county.example")
    )
    sender, rcpts, content = inbox.mails[0]
    assert sender == "coldchain@county.example"
    assert rcpts == ["duty@county.example", "quality@county.example"]
    assert b"CRITICAL cold room 1" in content


def test_apprise_delivers_to_a_json_endpoint(receiver: Receiver) -> None:
    # DingTalk and WeCom go through the same Apprise call with their own URL schemes
    url = receiver.url.replace("http://", "json://")
    AppriseChannel((url,)).send(MESSAGE, ())
    assert json.loads(receiver.requests[0][1])["title"] == MESSAGE.subject


def test_apprise_reaches_each_recipient_at_their_own_tagged_urls() -> None:
    """The route's address is the tag of the recipient's URLs: the shift lead's group
    robot gets the message, the duty operator's does not."""
    duty, lead = Receiver(), Receiver()
    try:
        channel = AppriseChannel(
            (
                "duty=" + duty.url.replace("http://", "json://"),
                "lead=" + lead.url.replace("http://", "json://") + "?x=1",
            )
        )
        channel.send(MESSAGE, ("lead",))
        assert len(lead.requests) == 1 and duty.requests == []
        with pytest.raises(DeliveryError, match="no URL is tagged nobody"):
            channel.send(MESSAGE, ("nobody",))
    finally:
        duty.close()
        lead.close()


def test_outbox_sends_each_notification_once_across_failures_and_restarts(
    db_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLDCHAIN_WEBHOOK_SECRET", "s3cret")
    upgrade(db_url)
    engine = make_engine(db_url)
    channels = {"webhook": Webhook(receiver.url, "COLDCHAIN_WEBHOOK_SECRET")}
    assert enqueue(
        engine, key="a17/step0", channel="webhook", recipients=("ops",), message=MESSAGE, due_ms=T0
    )
    assert not enqueue(
        engine, key="a17/step0", channel="webhook", recipients=("ops",), message=MESSAGE, due_ms=T0
    )  # the escalation clock asked again
    receiver.status = 503  # the receiver is down
    assert deliver_due(engine, channels, T0) == (0, 1)
    assert deliver_due(engine, channels, T0 + 30_000) == (0, 0)  # backing off
    engine.dispose()
    # the service restarts; the notification is still due, and is sent once
    engine = make_engine(db_url)
    receiver.status = 200
    assert deliver_due(engine, channels, T0 + 2 * MIN) == (1, 0)
    assert deliver_due(engine, channels, T0 + 60 * MIN) == (0, 0)
    engine.dispose()
    assert len([r for r in receiver.requests if b"a17" in r[1]]) == 2  # one 503, one 200
