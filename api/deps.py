"""What every route depends on: the services (database engine, readings store, live hub),
the signed-in user, and the role a route requires."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import Engine

from alerts.db import reading
from alerts.models import User
from alerts.repo.scope import Scope, scope_of
from alerts.repo.users import Role, session_user
from api.settings import ApiSettings
from collector.errors import StoreUnavailable
from collector.store import Store

if TYPE_CHECKING:
    from api.live import LiveHub

COOKIE = "coldchain_session"


def client_address(request: Request, proxies: Sequence[IPv4Network | IPv6Network]) -> str:
    """Who is asking: the peer's address, unless the peer is a trusted proxy; then the
    right-most address of X-Forwarded-For that is not a trusted proxy (each proxy adds
    the address it got the request from; what stands left of that is the client's word)."""
    peer = request.client.host if request.client else "unknown"
    if not _trusted(peer, proxies):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            try:
                return str(ip_address(hop))
            except ValueError:  # no proxy of ours writes that: believe the peer only
                return peer
    return hops[0] if hops else peer


def _trusted(address: str, proxies: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        found = ip_address(address)
    except ValueError:
        return False
    return any(found in network for network in proxies)


@dataclass
class Services:
    settings: ApiSettings
    engine: Engine
    open_store: Callable[[], Store]
    hub: LiveHub | None = None


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


def open_readings(svc: Services) -> Store:
    """The readings store, or 503 while it cannot be opened."""
    try:
        return svc.open_store()
    except StoreUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"readings store: {exc}") from None


def readings_store(svc: ServicesDep) -> Iterator[Store]:
    store = open_readings(svc)
    try:
        yield store
    finally:
        store.close()


StoreDep = Annotated[Store, Depends(readings_store)]


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(COOKIE)


#: what a user signed in with a one-time password may do before choosing their own
BEFORE_OWN_PASSWORD = {"/api/auth/me", "/api/auth/password", "/api/auth/logout"}


def current_user(request: Request, svc: ServicesDep) -> User:
    token = token_of(request)
    with reading(svc.engine) as s:
        user = session_user(s, token) if token else None
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "sign in first",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if user.must_change_password and request.url.path not in BEFORE_OWN_PASSWORD:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "choose your own password first (POST /api/auth/password): "
            "the one you signed in with was made for you",
        )
    return user


def scope_of_user(svc: Services, user: User) -> Scope:
    """What the user may see and act on (alerts/repo/scope.py)."""
    with reading(svc.engine) as s:
        return scope_of(s, user)


def require_every_site(svc: Services, user: User, what: str) -> None:
    """403 unless the user is given every site: for what is county-wide (the product
    profiles every site judges by, the whole audit trail)."""
    if not scope_of_user(svc, user).everywhere:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{what} needs a user of every site")


def same_origin(request: Request) -> None:
    """A form upload (multipart, which a plain HTML form of another site can send) must
    come from this site's own pages: a browser names the page's origin on every POST.
    The session cookie's SameSite=Strict already keeps another site's form out; this
    holds without it. A client that is not a browser sends no Origin."""
    origin = request.headers.get("origin")
    cross = request.headers.get("sec-fetch-site") == "cross-site"
    if cross or (origin is not None and urlsplit(origin).netloc != request.headers.get("host")):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a form sent from another site")


#: on every route that takes a multipart form
SameOrigin = Depends(same_origin)


def require(role: Role) -> Callable[..., User]:
    """A dependency: the signed-in user, if their role includes ``role``."""

    def check(user: Annotated[User, Depends(current_user)]) -> User:
        if not Role(user.role).may(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this needs the {role.value} role or above"
            )
        return user

    check.required_role = role  # type: ignore[attr-defined]  # read by the route audit test
    return check


Viewer = Annotated[User, Depends(require(Role.VIEWER))]
Driver = Annotated[User, Depends(require(Role.DRIVER))]
Operator = Annotated[User, Depends(require(Role.OPERATOR))]
Quality = Annotated[User, Depends(require(Role.QUALITY))]
Admin = Annotated[User, Depends(require(Role.ADMIN))]
