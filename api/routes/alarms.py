"""Alarms: the board's list (unacknowledged first, by severity and age; an alarm whose
condition cleared stays until someone acknowledges it), acknowledge with
a mandatory comment, assign. Both changes are audited by the store's operations."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import Select, case, select
from sqlalchemy.orm import Session

from alerts.db import transaction
from alerts.models import AlarmRow, BreachRow, Location, User
from alerts.repo import acknowledge_alarm, assign_alarm
from alerts.repo.scope import Scope, scope_of
from alerts.wording import local_time
from api.deps import Operator, ServicesDep, Viewer, scope_of_user
from api.schemas import Acknowledge, AlarmOut, Assign

router = APIRouter(prefix="/api/alarms", tags=["alarms"])

AlarmId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # an INTEGER key

#: unacknowledged first: active, then cleared (back in range, nobody has answered)
_STATE_ORDER = case(
    (AlarmRow.state == "active", 0),
    (AlarmRow.state == "cleared", 1),
    (AlarmRow.state == "acknowledged", 2),
    else_=3,
)
_LEVEL_ORDER = case((AlarmRow.level == "critical", 0), else_=1)


def _out(alarm: AlarmRow, breach: BreachRow, location: Location | None) -> AlarmOut:
    return AlarmOut(
        id=alarm.id,
        state=alarm.state,
        level=alarm.level,
        kind=breach.kind,
        raised_ms=alarm.raised_ms,
        start_ms=breach.start_ms,
        end_ms=breach.end_ms,
        gateway=breach.gateway,
        sensor=breach.sensor,
        location_id=breach.location_id,
        location_name=location.name if location else None,
        location_name_zh=location.name_zh if location else None,
        site_id=breach.site_id,
        batches=json.loads(breach.batches),
        min_value=breach.min_value,
        max_value=breach.max_value,
        acknowledged_by=alarm.acknowledged_by,
        ack_comment=alarm.ack_comment,
        acknowledged_ms=alarm.acknowledged_ms,
        assigned_to=alarm.assigned_to,
        settings=json.loads(breach.settings),
    )


def _query() -> Select[AlarmRow, BreachRow, Location]:
    return (
        select(AlarmRow, BreachRow, Location)
        .join(BreachRow, AlarmRow.breach_id == BreachRow.id)
        .outerjoin(Location, BreachRow.location_id == Location.id)
    )


Short = Annotated[str | None, Field(max_length=64)]
Ms = Annotated[int | None, Field(ge=0, le=2**53)]


class AlarmFilter(BaseModel):
    """The history's filters, the same for the list and its CSV: site, location, batch,
    level, kind, state, and the time raised (``from_ms`` inclusive, ``to_ms`` not)."""

    site: Short = None
    batch: Short = None
    location: Short = None
    level: Literal["warning", "critical"] | None = None
    kind: Short = None
    state: Literal["active", "cleared", "acknowledged", "closed"] | None = None
    from_ms: Ms = None
    to_ms: Ms = None

    def applied(
        self, query: Select[AlarmRow, BreachRow, Location]
    ) -> Select[AlarmRow, BreachRow, Location]:
        if self.batch is not None:
            # the id as a JSON string in the list; % and _ in it are matched as themselves
            query = query.where(BreachRow.batches.contains(json.dumps(self.batch), autoescape=True))
        for column, value in (
            (BreachRow.site_id, self.site),
            (BreachRow.location_id, self.location),
            (AlarmRow.level, self.level),
            (BreachRow.kind, self.kind),
            (AlarmRow.state, self.state),
        ):
            if value is not None:
                query = query.where(column == value)
        if self.from_ms is not None:
            query = query.where(AlarmRow.raised_ms >= self.from_ms)
        if self.to_ms is not None:
            query = query.where(AlarmRow.raised_ms < self.to_ms)
        return query


NO_FILTER = AlarmFilter()


@router.get("")
def alarms(
    user: Viewer,
    svc: ServicesDep,
    filters: Annotated[AlarmFilter, Query()] = NO_FILTER,
    scope: Literal["open", "all"] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    order: Literal["board", "newest"] = "board",
) -> list[AlarmOut]:
    """Open alarms are those not closed: active, cleared (the condition is over and
    nobody has acknowledged it yet: an alarm stays until a person answers it) and
    acknowledged (someone is on it, the condition goes on). ``board`` order:
    unacknowledged first, critical before warning, oldest first; ``newest``: by the time
    raised, newest first (the history). ``from_ms``/``to_ms`` bound the time raised;
    ``offset`` pages."""
    query = _query()
    within = scope_of_user(svc, user)
    if within.sites is not None:
        query = query.where(BreachRow.site_id.in_(sorted(within.sites)))
    if scope == "open":
        query = query.where(AlarmRow.state != "closed")
    query = filters.applied(query)
    if order == "newest":
        query = query.order_by(AlarmRow.raised_ms.desc(), AlarmRow.id.desc())
    else:
        query = query.order_by(_STATE_ORDER, _LEVEL_ORDER, AlarmRow.raised_ms, AlarmRow.id)
    query = query.offset(offset).limit(limit)
    with Session(svc.engine) as s:
        return [_out(a, b, loc) for a, b, loc in s.execute(query).all()]


CSV_COLUMNS = (
    "id", "state", "level", "kind", "site_id", "location_id", "location_name", "gateway",
    "sensor", "raised_ms", "start_ms", "end_ms", "min_value", "max_value", "batches",
    "acknowledged_by", "acknowledged_ms", "ack_comment", "assigned_to",
)  # fmt: skip


@router.get(
    "/export.csv",
    responses={200: {"content": {"text/csv": {}}}},
    response_class=Response,
)
def alarms_csv(
    user: Viewer,
    svc: ServicesDep,
    filters: Annotated[AlarmFilter, Query()] = NO_FILTER,
) -> Response:
    """The alarm history as CSV, newest first, with the same filters (up to 100,000
    alarms; times in ms since the epoch, as ISO text in UTC, and in the county's zone with
    its offset)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*CSV_COLUMNS, "raised_utc", "raised_local"])
    offset = 0
    while offset < 100_000:
        page = alarms(user, svc, filters, "all", 1000, offset, "newest")
        for a in page:
            row = a.model_dump()
            row["batches"] = " ".join(a.batches)
            raised = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.raised_ms / 1000))
            local = local_time(a.raised_ms, svc.settings.timezone)  # as the county reads it
            writer.writerow(
                [*("" if row[c] is None else row[c] for c in CSV_COLUMNS), raised, local]
            )
        if len(page) < 1000:
            break
        offset += 1000
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="alarms.csv"'},
    )


def _one(svc: ServicesDep, alarm_id: int, scope: Scope) -> AlarmOut:
    """The alarm, if it is at one of the user's sites (else as if there were none)."""
    with Session(svc.engine) as s:
        row = s.execute(_query().where(AlarmRow.id == alarm_id)).first()
        if row is None or not scope.site(row[1].site_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alarm {alarm_id} at your sites")
        return _out(*row)


@router.get("/{alarm_id}", responses={404: {"description": "no such alarm at your sites"}})
def alarm(alarm_id: AlarmId, user: Viewer, svc: ServicesDep) -> AlarmOut:
    return _one(svc, alarm_id, scope_of_user(svc, user))


@router.post(
    "/{alarm_id}/ack",
    responses={
        404: {"description": "no such alarm"},
        409: {"description": "already acknowledged"},
        422: {"description": "no comment"},
    },
)
def acknowledge(alarm_id: AlarmId, body: Acknowledge, user: Operator, svc: ServicesDep) -> AlarmOut:
    """Acknowledge with a comment saying what was done; silences escalation, keeps the
    record. The acknowledgement and its comment go into the audit trail."""
    if not body.comment.strip():
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "an acknowledgement needs a comment"
        )
    scope = scope_of_user(svc, user)
    _one(svc, alarm_id, scope)
    with transaction(svc.engine) as s:
        acknowledge_alarm(s, alarm_id, user=user.username, comment=body.comment.strip())
    return _one(svc, alarm_id, scope)


@router.post(
    "/{alarm_id}/assign",
    responses={404: {"description": "no such alarm, or no active user who can see it"}},
)
def assign(alarm_id: AlarmId, body: Assign, user: Operator, svc: ServicesDep) -> AlarmOut:
    scope = scope_of_user(svc, user)
    found = _one(svc, alarm_id, scope)
    if body.assignee is not None:
        with Session(svc.engine) as s:
            assignee = s.get(User, body.assignee)
            # one answer for a name nobody has and for someone who could not see the
            # alarm: the route does not tell who exists elsewhere in the county
            if (
                assignee is None
                or not assignee.active
                or not scope_of(s, assignee).site(found.site_id)
            ):
                raise HTTPException(
                    status.HTTP_404_NOT_FOUND,
                    f"no active user {body.assignee!r} who can see site {found.site_id}",
                )
    with transaction(svc.engine) as s:
        assign_alarm(s, alarm_id, assignee=body.assignee, actor=user.username)
    return _one(svc, alarm_id, scope)
