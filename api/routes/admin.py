"""Profiles (quality staff change them, with a reason), users (admins), the audit trail."""

from __future__ import annotations

import json
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.audit import head, verify
from alerts.config import AlertsConfig, EscalationConfig
from alerts.db import AuditRow, reading, transaction
from alerts.models import ProfileRow
from alerts.profiles import ProductProfile
from alerts.repo import profiles_in_force, save_profile
from alerts.repo.users import (
    Role,
    change_user,
    create_user,
    list_users,
    one_time_password,
    set_password,
)
from api.deps import Admin, Quality, ServicesDep, Viewer, require_every_site
from api.schemas import (
    AuditCheck,
    AuditOut,
    NewUser,
    NewUserOut,
    OneTimePassword,
    PoliciesOut,
    PolicyOut,
    ProfileChange,
    StepOut,
    UserChange,
    UserOut,
)
from coldchain.settings import ConfigError, load_toml

router = APIRouter(prefix="/api", tags=["profiles, users, audit"])


@router.get("/profiles")
def profiles(_user: Viewer, svc: ServicesDep) -> list[dict[str, object]]:
    """Every profile as in force now."""
    with Session(svc.engine) as s:
        return [json.loads(p.model_dump_json()) for p in profiles_in_force(s).values()]


@router.get("/profiles/{profile_id}", responses={404: {"description": "no such profile"}})
def profile(
    profile_id: str,
    _user: Viewer,
    svc: ServicesDep,
    at_ms: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, object]:
    """The profile in force now, or at ``at_ms`` (a change scheduled to come in force
    then shows at its time)."""
    with Session(svc.engine) as s:
        row = s.get(ProfileRow, profile_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no profile {profile_id!r}")
        body: dict[str, object] = json.loads(
            row.body_at(time.time_ns() // 1_000_000 if at_ms is None else at_ms)
        )
        return body


@router.put("/profiles/{profile_id}", responses={422: {"description": "invalid profile"}})
def change_profile(
    profile_id: str, body: ProfileChange, user: Quality, svc: ServicesDep
) -> dict[str, object]:
    """Create or change a product profile; old and new values and the reason go into the
    audit trail. The alert service applies it within a minute, or from ``from_ms`` (a
    change scheduled to come in force then: new season's limits); an ongoing breach ends
    there and the new limits apply from then on. A profile is county-wide: changing it
    needs a user of every site."""
    require_every_site(svc, user, "changing a product profile")
    try:
        new = ProductProfile.model_validate({**body.profile, "id": profile_id})
    except ValidationError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, json.loads(exc.json(include_url=False))
        ) from None
    with transaction(svc.engine) as s:
        save_profile(s, new, actor=user.username, reason=body.reason, from_ms=body.from_ms)
    saved: dict[str, object] = json.loads(new.model_dump_json())
    return saved


def _policy(e: EscalationConfig) -> PolicyOut:
    return PolicyOut(
        steps=[StepOut(after_min=s.after_min, notify=list(s.notify)) for s in e.steps],
        repeat_min=e.repeat_min,
        quiet_start=e.quiet_start.isoformat("minutes") if e.quiet_start else None,
        quiet_end=e.quiet_end.isoformat("minutes") if e.quiet_end else None,
        utc_offset_h=e.utc_offset_h,
    )


@router.get("/policies")
def policies(_user: Viewer, svc: ServicesDep) -> PoliciesOut:
    """Who is told first, who next, how often, quiet hours: from the alert service's
    config file (COLDCHAIN_ALERTS_CONFIG); changes are made there and audited by review."""
    path = svc.settings.alerts_config
    if path is None:
        return PoliciesOut(configured=False, default=None, sites={})
    try:
        config = load_toml(path, AlertsConfig)
    except ConfigError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return PoliciesOut(
        configured=True,
        default=_policy(config.escalation) if config.escalation else None,
        sites={site: _policy(e) for site, e in config.site_escalation.items()},
    )


@router.get("/users")
def users(_user: Admin, svc: ServicesDep) -> list[UserOut]:
    with reading(svc.engine) as s:
        return [UserOut.model_validate(u) for u in list_users(s)]


@router.post(
    "/users", status_code=status.HTTP_201_CREATED, responses={409: {"description": "exists"}}
)
def add_user(body: NewUser, user: Admin, svc: ServicesDep) -> NewUserOut:
    """A new user; without a password in the body, a one-time password is made and shown
    once in this answer (only its hash is kept)."""
    password = body.password or one_time_password()
    with transaction(svc.engine) as s:
        created = create_user(
            s,
            body.username,
            password,
            body.role,
            actor=user.username,
            display_name=body.display_name,
            sites=body.sites,
            truck=body.truck,
            one_time=body.password is None,
        )
        out = UserOut.model_validate(created)
    return NewUserOut(**out.model_dump(), password=None if body.password else password)


@router.patch("/users/{username}", responses={404: {"description": "no such user"}})
def change(username: str, body: UserChange, user: Admin, svc: ServicesDep) -> UserOut:
    if username == user.username and (
        body.active is False or (body.role not in (None, Role.ADMIN))
    ):
        raise HTTPException(status.HTTP_409_CONFLICT, "an admin cannot lock themselves out")
    with transaction(svc.engine) as s:
        changed = change_user(
            s,
            username,
            actor=user.username,
            role=body.role,
            active=body.active,
            sites=body.sites,
            truck=body.truck,
            clear_truck=body.clear_truck,
            reason=body.reason,
        )
    return UserOut.model_validate(changed)


@router.post("/users/{username}/password", responses={404: {"description": "no such user"}})
def reset_password(username: str, user: Admin, svc: ServicesDep) -> OneTimePassword:
    """A new one-time password for a user who lost theirs: their sessions end, the
    password is shown once in this answer (only its hash is kept), and they choose
    their own at their next sign-in; audited."""
    password = one_time_password()
    with transaction(svc.engine) as s:
        set_password(s, username, password, actor=user.username, one_time=True)
    return OneTimePassword(username=username, password=password)


@router.get("/audit")
def audit(
    user: Quality,
    svc: ServicesDep,
    entity: Annotated[str | None, Query(max_length=64)] = None,
    entity_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[AuditOut]:
    """The trail, newest first (the whole county's: for users of every site)."""
    require_every_site(svc, user, "the audit trail")
    query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if entity is not None:
        query = query.where(AuditRow.entity == entity)
    if entity_id is not None:
        query = query.where(AuditRow.entity_id == entity_id)
    with Session(svc.engine) as s:
        return [AuditOut.model_validate(r) for r in s.execute(query).scalars()]


@router.get("/audit/verify")
def audit_verify(user: Quality, svc: ServicesDep) -> AuditCheck:
    require_every_site(svc, user, "the audit trail")
    problems = verify(svc.engine, svc.settings.audit_anchor)
    rows, head_hash = head(svc.engine)
    return AuditCheck(
        intact=not problems, rows=rows, head_hash=head_hash, problems=[str(p) for p in problems]
    )
