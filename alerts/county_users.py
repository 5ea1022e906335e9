"""The users of a county file: who signs in, with which role, on which sites (and a
driver's truck). Planned against the database like the places (alerts/county.py), each
change through the audited operations of alerts/repo/users.py.

Passwords are never in the file: a user the file adds gets a one-time password that
``coldchain setup apply`` prints once, or the one in the environment variable named by
``password_env`` (for automation). A user taken out of the file is listed, never
deleted."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Annotated

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.errors import Refused
from alerts.models import User
from alerts.repo.users import (
    USERNAME_PATTERN,
    Role,
    change_user,
    create_user,
    one_time_password,
)
from coldchain.settings import Strict

REASON = "county file"


class UserIn(Strict):
    username: Annotated[str, Field(pattern=USERNAME_PATTERN)]
    display_name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    role: Role
    #: the site ids they may see and act on; empty: every site (admins: always every site)
    sites: tuple[Annotated[str, Field(max_length=64)], ...] = ()
    #: a driver's truck: its gateway id
    truck: Annotated[str, Field(max_length=64)] | None = None
    active: bool = True
    #: the environment variable holding their first password (else one is made up)
    password_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] | None = None


#: (what changes, for a person; the operation), as alerts/county.py's Change takes them
Step = tuple[str, Callable[[Session], object]]


def user_steps(s: Session, users: tuple[UserIn, ...], passwords: dict[str, str]) -> Iterator[Step]:
    """The changes that make the database's users what the file says; ``passwords``
    receives the one-time password of each user added without ``password_env``."""
    for u in users:
        row = s.get(User, u.username)
        if row is None:
            yield f"add user {u.username} ({u.role.value})", _adder(u, passwords)
            continue
        old = (row.role, sorted(json.loads(row.sites or "[]")), row.truck, row.active)
        new = (u.role.value, sorted(set(u.sites)), u.truck, u.active)
        if old != new:
            differ = [
                f"{name} {a!r} -> {b!r}"
                for name, a, b in zip(("role", "sites", "truck", "active"), old, new, strict=True)
                if a != b
            ]
            yield f"change user {u.username}: " + ", ".join(differ), _changer(u)


def _adder(u: UserIn, passwords: dict[str, str]) -> Callable[[Session], object]:
    def add(s: Session) -> object:
        if u.password_env is not None:
            password = os.environ.get(u.password_env, "")
            if not password:
                raise Refused(f"user {u.username}: environment variable {u.password_env} is empty")
        else:
            password = passwords[u.username] = one_time_password()
        user = create_user(
            s,
            u.username,
            password,
            u.role,
            actor=REASON,
            display_name=u.display_name,
            sites=u.sites,
            truck=u.truck,
            one_time=u.password_env is None,
        )
        if not u.active:
            change_user(s, u.username, actor=REASON, active=False, reason=REASON)
        return user

    return add


def _changer(u: UserIn) -> Callable[[Session], object]:
    def change(s: Session) -> object:
        return change_user(
            s,
            u.username,
            actor=REASON,
            role=u.role,
            active=u.active,
            sites=u.sites,
            truck=u.truck,
            clear_truck=u.truck is None,
            reason=REASON,
        )

    return change


def not_in_file(
    s: Session, users: tuple[UserIn, ...], *, deactivate: bool = False
) -> tuple[list[str], list[Step]]:
    """The users the file does not name (left as they are), and with ``deactivate`` the
    steps that deactivate those still active. Admins are never deactivated this way: a
    file without them must not lock the county out (deactivate an admin by hand)."""
    named = {u.username for u in users}
    left: list[str] = []
    steps: list[Step] = []
    for row in s.execute(select(User).order_by(User.username)).scalars():
        if row.username in named:
            continue
        if deactivate and row.active and Role(row.role) is not Role.ADMIN:
            steps.append((f"deactivate user {row.username} (not in the file)", _off(row.username)))
        else:
            left.append(f"user {row.username}")
    return left, steps


def _off(username: str) -> Callable[[Session], object]:
    def deactivate(s: Session) -> object:
        return change_user(
            s, username, actor=REASON, active=False, reason=f"{REASON}: not in it any more"
        )

    return deactivate


def export_users(s: Session) -> tuple[UserIn, ...]:
    return tuple(
        UserIn(
            username=u.username,
            display_name=u.display_name if u.display_name != u.username else None,
            role=Role(u.role),
            sites=tuple(json.loads(u.sites or "[]")),
            truck=u.truck,
            active=u.active,
        )
        for u in s.execute(select(User).order_by(User.username)).scalars()
    )
