"""Live updates by Server-Sent Events: new readings, gateway states, alarm changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.deps import ServicesDep, Viewer, scope_of_user
from api.live import LiveHub

router = APIRouter(prefix="/api", tags=["live"])


def live_hub(svc: ServicesDep) -> LiveHub:
    if svc.hub is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "live updates are off")
    return svc.hub


@router.get(
    "/live",
    response_class=EventSourceResponse,
    responses={503: {"description": "live updates are off"}},
)
async def live(
    user: Viewer, svc: ServicesDep, hub: Annotated[LiveHub, Depends(live_hub)]
) -> AsyncIterator[ServerSentEvent]:
    """Events ``hello``, ``reading``, ``status``, ``alarm`` and ``broker``, JSON data;
    those of a site only to the users given it."""
    scope = scope_of_user(svc, user)
    client = hub.subscribe()
    try:
        yield ServerSentEvent(event="hello", data={"broker": hub.broker_connected})
        while True:
            event = await client.queue.get()
            site = event.data.get("site", "")
            if site != "" and not scope.site(site if isinstance(site, str) else None):
                continue  # another site's reading, gateway or alarm
            yield ServerSentEvent(event=event.kind, data=event.data)
    finally:
        hub.unsubscribe(client)
