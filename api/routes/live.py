"""Live updates by Server-Sent Events: new readings, gateway states, alarm changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.deps import ServicesDep, Viewer
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
    _user: Viewer, hub: Annotated[LiveHub, Depends(live_hub)]
) -> AsyncIterator[ServerSentEvent]:
    """Events ``hello``, ``reading``, ``status``, ``alarm`` and ``broker``, JSON data."""
    client = hub.subscribe()
    try:
        yield ServerSentEvent(event="hello", data={"broker": hub.broker_connected})
        while True:
            event = await client.queue.get()
            yield ServerSentEvent(event=event.kind, data=event.data)
    finally:
        hub.unsubscribe(client)
