"""Users, roles and sessions in the service's store. Passwords are kept as argon2id hashes
(alerts/passwords.py: the rule and the bounded hashing), sessions as the SHA-256 of a
random token; every user and role change is written with its audit row in the caller's
transaction. There is no default user: the
first admin is created by ``coldchain users add NAME --role admin``."""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
from collections.abc import Sequence

from argon2 import PasswordHasher
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from alerts import passwords
from alerts.audit import now_ms, record
from alerts.errors import Conflict, NotFound, Refused
from alerts.models import Gateway, SessionRow, Site, User


class Role(enum.StrEnum):
    """Each role may do what the ones before it may, and more (docs/design-web.md)."""

    VIEWER = "viewer"
    DRIVER = "driver"
    OPERATOR = "operator"
    QUALITY = "quality"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def may(self, needed: Role) -> bool:
        return self.rank >= needed.rank


def one_time_password() -> str:
    """A password to hand to a new user, or one who lost theirs: shown once, never kept."""
    return secrets.token_urlsafe(12)


SESSION_MS = 12 * 3_600_000  # a shift
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"

#: verified against when the user does not exist, so that a missing name takes as long
_DUMMY = PasswordHasher().hash("not a password of anyone")


def _check_password(password: str, username: str, one_time: bool) -> None:
    """The rule (alerts/passwords.py), but for the random one-time passwords."""
    if not one_time:
        passwords.check(password, username)


def _scope_fields(s: Session, sites: Sequence[str], truck: str | None) -> tuple[str, str | None]:
    """The sites and truck as stored, after checking that they exist."""
    missing = sorted(set(sites) - set(s.execute(select(Site.id)).scalars()))
    if missing:
        raise NotFound(f"no site {', '.join(map(repr, missing))}")
    if truck is not None and s.get(Gateway, truck) is None:
        raise NotFound(f"no gateway {truck!r} (a driver's truck is its gateway)")
    return json.dumps(sorted(set(sites))), truck


def _scope_dict(user: User) -> dict[str, object]:
    return {"sites": json.loads(user.sites or "[]"), "truck": user.truck}


def create_user(
    s: Session,
    username: str,
    password: str,
    role: Role,
    *,
    actor: str,
    display_name: str | None = None,
    sites: Sequence[str] = (),
    truck: str | None = None,
    one_time: bool = False,
) -> User:
    """A new user; ``sites``: those they may see and act on (none: every site);
    ``truck``: a driver's truck gateway, whose batches they move; ``one_time``: the
    password was made for them (shown once), and they choose their own first."""
    _check_password(password, username, one_time)
    if s.get(User, username) is not None:
        raise Conflict(f"user {username!r} exists")
    stored_sites, stored_truck = _scope_fields(s, sites, truck)
    user = User(
        username=username,
        display_name=display_name or username,
        role=role.value,
        password_hash=passwords.hash_password(password),
        active=True,
        created_ms=now_ms(),
        sites=stored_sites,
        truck=stored_truck,
        must_change_password=one_time,
    )
    s.add(user)
    record(
        s,
        actor=actor,
        action="user.create",
        entity="user",
        entity_id=username,
        new={"role": role.value, "display_name": display_name or username, **_scope_dict(user)},
    )
    return user


def change_user(
    s: Session,
    username: str,
    *,
    actor: str,
    role: Role | None = None,
    active: bool | None = None,
    sites: Sequence[str] | None = None,
    truck: str | None = None,
    clear_truck: bool = False,
    reason: str,
) -> User:
    """Change a user's role, sites or truck, or deactivate them (their sessions end);
    audited."""
    if not reason.strip():
        raise Refused("a user change needs a reason")
    user = s.get(User, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    old = {"role": user.role, "active": user.active, **_scope_dict(user)}
    if sites is not None or truck is not None or clear_truck:
        user.sites, user.truck = _scope_fields(
            s,
            json.loads(user.sites or "[]") if sites is None else sites,
            None if clear_truck else truck or user.truck,
        )
    if role is not None:
        user.role = role.value
    if active is not None:
        user.active = active
        if not active:
            s.execute(delete(SessionRow).where(SessionRow.username == username))
    record(
        s,
        actor=actor,
        action="user.change",
        entity="user",
        entity_id=username,
        old=old,
        new={"role": user.role, "active": user.active, **_scope_dict(user)},
        reason=reason,
    )
    s.flush()
    return user


def set_password(
    s: Session, username: str, password: str, *, actor: str, one_time: bool = False
) -> None:
    """A new password; their sessions end. ``one_time``: made for them (a reset): they
    choose their own at their next sign-in."""
    _check_password(password, username, one_time)
    user = s.get(User, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    user.password_hash = passwords.hash_password(password)
    user.must_change_password = one_time
    s.execute(delete(SessionRow).where(SessionRow.username == username))
    record(
        s,
        actor=actor,
        action="user.password",
        entity="user",
        entity_id=username,
        new={"one_time": one_time},
    )


def change_own_password(s: Session, username: str, current: str, new: str) -> None:
    """A user's own choice of password, given the one they have; their sessions end
    (they sign in again with it)."""
    if authenticate(s, username, current) is None:
        raise Refused("the current password is not right")
    if new == current:
        raise Refused("choose a password other than the one you have")
    set_password(s, username, new, actor=username)


def authenticate(s: Session, username: str, password: str) -> User | None:
    """The active user if the password is right; None otherwise (same work either way)."""
    user = s.get(User, username)
    if not passwords.verify(user.password_hash if user is not None else _DUMMY, password):
        return None
    if user is None or not user.active:
        return None
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(s: Session, username: str, now: int | None = None) -> tuple[str, int]:
    """A new session for the user: (token, expires_ms). Only the token's hash is stored."""
    token = secrets.token_urlsafe(32)
    current = now_ms() if now is None else now
    expires = current + SESSION_MS
    s.execute(delete(SessionRow).where(SessionRow.expires_ms <= current))
    s.add(
        SessionRow(
            token_sha256=_digest(token),
            username=username,
            created_ms=current,
            expires_ms=expires,
        )
    )
    return token, expires


def session_user(s: Session, token: str, now: int | None = None) -> User | None:
    current = now_ms() if now is None else now
    row = s.execute(
        select(User)
        .join(SessionRow, SessionRow.username == User.username)
        .where(SessionRow.token_sha256 == _digest(token), SessionRow.expires_ms > current)
    ).scalar_one_or_none()
    if row is None or not row.active:
        return None
    return row


def close_session(s: Session, token: str) -> None:
    s.execute(delete(SessionRow).where(SessionRow.token_sha256 == _digest(token)))


def list_users(s: Session) -> list[User]:
    users = list(s.execute(select(User).order_by(User.username)).scalars())
    return users
