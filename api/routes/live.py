"""Live updates by Server-Sent Events: new readings, gateway states, alarm changes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.deps import ServicesDep, Viewer, scope_of_user, token_of
from api.live import LiveHub

router = APIRouter(prefix="/api", tags=["live"])


def live_hub(svc: ServicesDep) -> LiveHub:
    if svc.hub is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "live updates are off")
    return svc.hub


def stream_room(request: Request, user: Viewer, svc: ServicesDep) -> str:
    """The session's key, if it may open one more stream (checked before the stream
    starts: a refusal must be an answer, not a broken stream); 429 otherwise."""
    session = hashlib.sha256((token_of(request) or "").encode()).hexdigest()
    if svc.hub is not None and not svc.hub.room_for(session, user.username):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "this session already holds its live streams: close one (another tab)",
        )
    return session


@router.get(
    "/live",
    response_class=EventSourceResponse,
    responses={
        429: {"description": "this session already holds its streams"},
        503: {"description": "live updates are off"},
    },
)
async def live(
    user: Viewer,
    svc: ServicesDep,
    hub: Annotated[LiveHub, Depends(live_hub)],
    session: Annotated[str, Depends(stream_room)],
) -> AsyncIterator[ServerSentEvent]:
    """Events ``hello``, ``reading``, ``status``, ``alarm`` and ``broker``, JSON data;
    those of a site only to the users given it. A session holds at most
    ``STREAMS_PER_SESSION`` streams at once (a user ``STREAMS_PER_USER``): 429 past it."""
    scope = scope_of_user(svc, user)
    client = hub.subscribe(session, user.username)
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
