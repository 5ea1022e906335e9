"""Notifications: channels, and a durable outbox that sends each notification once.

Channels:

- :class:`Webhook`: JSON POST signed with a shared secret (``X-Coldchain-Signature:
  sha256=<hex HMAC of "<timestamp>.<body>">`` and ``X-Coldchain-Timestamp``), so the
  receiver can check who sent it and refuse replays.
- :class:`Email`: SMTP (STARTTLS and login when configured; password from the
  environment).
- :class:`AppriseChannel`: chat and SMS services through Apprise URLs (DingTalk
  ``dingtalk://``, WeCom ``wecombot://``, and the rest Apprise knows).

The outbox (table ``notifications``) is keyed by the notification key from
:func:`alerts.lifecycle.due_notifications`: enqueuing the same key twice keeps one row,
and a row is marked sent only after the channel accepted it, so a notification due while
the service was restarting is still sent, once. Failures are retried with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy import BigInteger, Engine, Index, Integer, String, Text, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from alerts.db import Base

MINUTE_MS = 60_000


class DeliveryError(Exception):
    """A channel did not take the message; the outbox retries it."""


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    severity: str  # warning | critical
    alarm_id: str
    #: the facts a provider's approved template is filled with (alerts/china.py)
    fields: Mapping[str, str] = field(default_factory=dict)


class Channel(Protocol):
    name: str

    def send(self, message: Message, recipients: tuple[str, ...]) -> str | None:
        """Deliver it, or raise DeliveryError; the provider's receipt, if it gives one."""
        ...


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass
class Webhook:
    url: str
    secret_env: str
    name: str = "webhook"
    timeout_s: float = 10.0

    def send(self, message: Message, recipients: tuple[str, ...]) -> None:
        secret = os.environ.get(self.secret_env, "")
        if not secret:
            raise DeliveryError(
                f"webhook secret: environment variable {self.secret_env} is empty or not set"
            )
        body = json.dumps(
            {
                "subject": message.subject,
                "body": message.body,
                "severity": message.severity,
                "alarm_id": message.alarm_id,
                "recipients": list(recipients),
            },
            ensure_ascii=False,
        ).encode()
        stamp = str(int(time.time()))
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "X-Coldchain-Timestamp": stamp,
                "X-Coldchain-Signature": sign(secret.encode(), stamp, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                if not 200 <= response.status < 300:
                    raise DeliveryError(f"webhook answered HTTP {response.status}")
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"webhook {self.url}: {exc}") from None


@dataclass
class Email:
    host: str
    port: int
    sender: str
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    name: str = "email"
    timeout_s: float = 20.0

    def send(self, message: Message, recipients: tuple[str, ...]) -> None:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = ", ".join(recipients)
        mail["Subject"] = message.subject
        mail.set_content(message.body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, os.environ.get(self.password_env or "", ""))
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"smtp {self.host}:{self.port}: {exc}") from None


@dataclass
class AppriseChannel:
    """DingTalk, WeCom and the rest through Apprise. Each URL may carry a tag naming its
    recipient (``lead=dingtalk://…``); a route's address is that tag, so each recipient
    is reached at their own URLs. A channel with no tags sends every URL everything."""

    urls: tuple[str, ...]
    name: str = "apprise"

    def send(self, message: Message, recipients: tuple[str, ...]) -> None:
        import apprise

        service = apprise.Apprise()
        tags: set[str] = set()
        for entry in self.urls:
            tag, url = _tagged(entry)
            if not service.add(url, tag=tag):
                raise DeliveryError(f"apprise does not understand {url.split('://')[0]}://")
            if tag is not None:
                tags.add(tag)
        wanted = [r for r in recipients if r in tags] if tags else []
        if tags and not wanted:
            raise DeliveryError(f"apprise: no URL is tagged {', '.join(recipients)}")
        sent = service.notify(
            title=message.subject, body=message.body, tag=wanted or apprise.common.MATCH_ALL_TAG
        )
        if not sent:
            raise DeliveryError("apprise: at least one service did not take the message")


_TAG = re.compile(r"^([A-Za-z0-9_.-]+)=(\S+://\S+)$")


def _tagged(entry: str) -> tuple[str | None, str]:
    """``tag=scheme://…`` as (tag, URL); a bare URL has no tag."""
    found = _TAG.match(entry)
    return (found.group(1), found.group(2)) if found else (None, entry)


_LINK_AT_END = re.compile(r"https?://\S+/a/\S+$")


@dataclass
class Printed:
    """A channel that hands the message to a function (the demo prints it)."""

    show: Callable[[str], None]
    name: str = "printed"

    def send(self, message: Message, recipients: tuple[str, ...]) -> None:
        # a message with a link to its alarm ends with it (alerts/wording.py)
        found = _LINK_AT_END.search(message.body)
        link = f" {found.group(0)}" if found else ""
        self.show(f"NOTIFY {', '.join(recipients)}: {message.subject}{link}")


class NotificationRow(Base):
    __tablename__ = "notifications"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), nullable=False)
    recipients: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    alarm_id: Mapped[str] = mapped_column(String(64), nullable=False)
    due_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # pending | sent
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_ms: Mapped[int | None] = mapped_column(BigInteger)
    #: the template facts, JSON (alerts/china.py)
    fields: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    #: what the provider answered when it took the message (its message or call id)
    receipt: Mapped[str | None] = mapped_column(Text)
    #: the provider's delivery reports since (alerts/receipts.py), JSON
    delivery: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("notifications_due", "state", "next_attempt_ms"),)


def enqueue(
    engine: Engine,
    *,
    key: str,
    channel: str,
    recipients: tuple[str, ...],
    message: Message,
    due_ms: int,
) -> bool:
    """Queue a notification once; returns False if its key was already queued."""
    values = {
        "key": key,
        "channel": channel,
        "recipients": json.dumps(list(recipients)),
        "subject": message.subject,
        "body": message.body,
        "severity": message.severity,
        "alarm_id": message.alarm_id,
        "fields": json.dumps(dict(message.fields), ensure_ascii=False),
        "due_ms": due_ms,
        "state": "pending",
        "attempts": 0,
        "next_attempt_ms": due_ms,
    }
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(NotificationRow)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(NotificationRow.key)
    )
    with engine.begin() as conn:
        return conn.execute(statement).first() is not None


def deliver_due(
    engine: Engine, channels: dict[str, Channel], now_ms: int, retry_max_ms: int = 30 * MINUTE_MS
) -> tuple[int, int]:
    """Send what is due; returns (sent, failed). A failure waits 1, 2, 4 … minutes."""
    sent = failed = 0
    with Session(engine) as s:
        due = list(
            s.execute(
                select(NotificationRow.key)
                .where(
                    NotificationRow.state == "pending", NotificationRow.next_attempt_ms <= now_ms
                )
                .order_by(NotificationRow.due_ms)
            ).scalars()
        )
        s.rollback()
        for key in due:
            # claimed: another instance sending the same row skips it (PostgreSQL locks
            # the row until this commit; SQLite has one writer anyway)
            row = s.execute(
                select(NotificationRow)
                .where(NotificationRow.key == key, NotificationRow.state == "pending")
                .with_for_update(skip_locked=True)
            ).scalar_one_or_none()
            if row is None:
                s.rollback()
                continue  # sent meanwhile, or being sent by another instance
            message = Message(
                row.subject, row.body, row.severity, row.alarm_id, json.loads(row.fields or "{}")
            )
            channel = channels.get(row.channel)
            try:
                if channel is None:
                    raise DeliveryError(f"no channel {row.channel!r} configured")
                receipt = channel.send(message, tuple(json.loads(row.recipients)))
            except DeliveryError as exc:
                row.attempts += 1
                row.last_error = str(exc)
                row.next_attempt_ms = now_ms + min(
                    retry_max_ms, MINUTE_MS * 2 ** (row.attempts - 1)
                )
                failed += 1
            else:
                row.state, row.sent_ms, row.last_error = "sent", now_ms, None
                row.receipt = receipt
                row.attempts += 1
                sent += 1
            s.commit()  # one at a time: a crash mid-run re-sends at most the one in hand
    return sent, failed
