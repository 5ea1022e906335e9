"""Signed, expiring links from a notification to its one alarm (docs/design-alerts.md,
"Acknowledge from the phone"): ``{public_url}/a/{token}``, the token naming the alarm,
the recipient it was sent to and when it expires, signed with a secret both the alert
service and the API hold (itsdangerous, HMAC-SHA256). The link opens the alarm's page;
the recipient signs in there and acknowledges with a comment. It proves nothing by
itself: anyone holding it still has to sign in.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from alerts.errors import Refused

SALT = "coldchain.alarm-link"


@dataclass(frozen=True)
class AlarmLink:
    alarm_id: int
    recipient: str
    expires_ms: int


def make_token(secret: str, link: AlarmLink) -> str:
    return str(
        URLSafeSerializer(secret, salt=SALT).dumps([link.alarm_id, link.recipient, link.expires_ms])
    )


def read_token(secret: str, token: str, now_ms: int) -> AlarmLink:
    """The link's alarm; Refused if it was not signed with this secret or has expired."""
    try:
        alarm_id, recipient, expires_ms = URLSafeSerializer(secret, salt=SALT).loads(token)
        link = AlarmLink(int(alarm_id), str(recipient), int(expires_ms))
    except (BadSignature, TypeError, ValueError):
        raise Refused("this link is not one of ours") from None
    if link.expires_ms < now_ms:
        raise Refused("this link has expired: open the alarm board instead")
    return link


@dataclass(frozen=True)
class Links:
    """How the alert service makes links: the API's public address, the secret, how
    long a link is good for."""

    public_url: str
    secret: str
    valid_ms: int = 24 * 3_600_000

    def for_alarm(self, alarm_id: int, recipient: str, now_ms: int) -> str:
        token = make_token(self.secret, AlarmLink(alarm_id, recipient, now_ms + self.valid_ms))
        return f"{self.public_url.rstrip('/')}/a/{token}"
