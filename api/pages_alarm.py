"""One alarm's page (``/alarms/{id}``), and the signed link a notification carries to it
(``/a/{token}``, docs/design-alerts.md "Acknowledge from the phone"): the recipient
opens it on the phone that was notified, signs in if they are not, and acknowledges
with a comment through the same API as the board (``POST /api/alarms/{id}/ack``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from alerts.audit import now_ms
from alerts.errors import Refused
from alerts.links import read_token
from alerts.repo.users import Role
from api.deps import ServicesDep, scope_of_user
from api.pages import group_alarms, page_user, render
from api.routes import alarms as alarm_routes
from api.routes.alarms import AlarmId

router = APIRouter(include_in_schema=False)


@router.get("/alarms/{alarm_id}")
def alarm_page(alarm_id: AlarmId, request: Request, svc: ServicesDep) -> HTMLResponse:
    user = page_user(request, svc, Role.VIEWER)
    alarm = alarm_routes._one(svc, alarm_id, scope_of_user(svc, user))
    return render(
        request,
        "alarm_page.html",
        user,
        alarms=group_alarms([alarm]),
        alarm_id=alarm_id,
        can_ack=Role(user.role).may(Role.OPERATOR),
        batch_links=Role(user.role).may(Role.QUALITY),
    )


@router.get("/a/{token}")
def alarm_link(token: str, request: Request, svc: ServicesDep) -> Response:
    """A notification's link: its alarm's page (sign-in first, as for every page), or a
    page that says the link has expired or is not one of ours."""
    secret = svc.settings.link_secret
    try:
        if secret is None:
            raise Refused("links are not set up on this server (COLDCHAIN_LINK_SECRET)")
        link = read_token(secret.get_secret_value(), token[:512], now_ms())
    except Refused as exc:
        page = render(request, "error.html", None, message=str(exc))
        page.status_code = status.HTTP_410_GONE
        return page
    return RedirectResponse(f"/alarms/{link.alarm_id}", status_code=status.HTTP_303_SEE_OTHER)
