"""Sign in and out. Failed sign-ins slow down their address (for the name tried, and
overall), shared by every replica through the database; every refusal is audited."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from alerts.audit import now_ms
from alerts.db import transaction
from alerts.models import User
from alerts.repo import signin
from alerts.repo.signin import Refusal
from alerts.repo.users import (
    SESSION_MS,
    Role,
    authenticate,
    change_own_password,
    close_session,
    open_session,
)
from api.deps import COOKIE, ServicesDep, Viewer, client_address, token_of
from api.schemas import Login, Me, PasswordChange, SessionOut

router = APIRouter(prefix="/api/auth", tags=["auth"])

PUBLIC = {"/api/auth/login", "/api/auth/logout"}


@router.post(
    "/login",
    responses={
        401: {"description": "wrong user name or password"},
        429: {"description": "too many failed sign-ins from this address: Retry-After"},
    },
)
def login(body: Login, request: Request, response: Response, svc: ServicesDep) -> SessionOut:
    """Sign in. Repeated failures from one address slow that address down, for that
    name and overall (alerts/repo/signin.py); they never lock the account."""
    address = client_address(request, svc.settings.proxies)
    with transaction(svc.engine) as s:
        wait = signin.wait_s(s, body.username, address, now_ms())
        if wait:
            signin.refused(s, body.username, address, Refusal.HELD_BACK, now_ms(), count=False)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed sign-ins from here: wait and try again",
            headers={"Retry-After": str(wait)},
        )
    with transaction(svc.engine) as s:
        user = authenticate(s, body.username, body.password)
        opened = None if user is None else open_session(s, user.username)
        if opened is not None:
            signin.succeeded(s, body.username, address)
    if user is None or opened is None:
        with transaction(svc.engine) as s:
            known = s.get(User, body.username)
            why = Refusal.WRONG_PASSWORD if known and known.active else Refusal.UNKNOWN_USER
            signin.refused(s, body.username, address, why, now_ms())
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
    token, expires_ms = opened
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=svc.settings.secure_cookies,
        max_age=SESSION_MS // 1000,
        path="/",
    )
    return SessionOut(
        token=token,
        username=user.username,
        role=Role(user.role),
        display_name=user.display_name,
        expires_ms=expires_ms,
        must_change_password=user.must_change_password,
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, response: Response, svc: ServicesDep) -> None:
    token = token_of(request)
    if token:
        with transaction(svc.engine) as s:
            close_session(s, token)
    response.delete_cookie(COOKIE, path="/")


@router.get("/me")
def me(user: Viewer) -> Me:
    return _me(user)


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={400: {"description": "the current password is not right, or too short"}},
)
def change_password(body: PasswordChange, user: Viewer, svc: ServicesDep) -> None:
    """Choose one's own password (first of all after signing in with a one-time one).
    Every session of the user ends: they sign in again with it. Audited."""
    with transaction(svc.engine) as s:
        change_own_password(s, user.username, body.current_password, body.new_password)


def _me(user: User) -> Me:
    return Me(
        username=user.username,
        role=Role(user.role),
        display_name=user.display_name,
        must_change_password=user.must_change_password,
    )
