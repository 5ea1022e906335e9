"""The cab view, served by the truck's own gateway from what it has just read: it keeps
working in the cab with no mobile signal. Starlette (under uvicorn, in the gateway's
event loop); the page polls ``/latest.json`` every two seconds, with its own script
(``cab.js``, no inline script, no script from outside). It answers only to the Host
names of its config (``cab.hosts``) and carries the pages' security headers.
"""

from __future__ import annotations

import time
from html import escape
from importlib import resources

from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from coldchain.health import CountersCollector, registry_of
from coldchain.http_headers import SecurityHeaders
from coldchain.wire import Quality
from gateway.cab_alarms import CabAlarms, LimitsCounters
from gateway.config import GatewayConfig
from gateway.sink import Sink

PAGE = (resources.files("gateway") / "cab.html").read_text(encoding="utf-8")
SCRIPT = (resources.files("gateway") / "cab.js").read_text(encoding="utf-8")


def cab_app(
    config: GatewayConfig, sink: Sink, uplink: object, alarms: CabAlarms | None = None
) -> Starlette:
    """``uplink`` is anything with a ``connected`` attribute (the publisher); ``alarms``
    the compartments' own judgement (gateway/cab_alarms.py)."""
    assert config.cab is not None
    labels = config.cab.labels
    devices = [d.id for bus in config.buses for d in bus.devices]
    title = escape(f"{config.gateway.id} · cab")

    async def page(_request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.replace("$title", title))

    async def script(_request: Request) -> Response:
        return Response(SCRIPT, media_type="text/javascript; charset=utf-8")

    async def latest(_request: Request) -> JSONResponse:
        compartments = []
        for device in devices:
            mine = {
                sensor.split(".", 1)[1]: r
                for sensor, r in sink.latest.items()
                if sensor.startswith(device + ".")
            }
            temps = [r for r in mine.values() if r.temp_c is not None and r.q is not Quality.FAULT]
            if not temps and not any(r.q is Quality.FAULT for r in mine.values()):
                continue  # a GPS, not a compartment
            air = mine.get("air") or mine.get("temp") or (temps[0] if temps else None)
            door = mine.get("door")
            setpoint = mine.get("setpoint")
            compartments.append(
                {
                    "device": device,
                    "label": labels.get(device, device),
                    "temp_c": air.temp_c if air is not None else None,
                    "ts_ms": air.ts_ms if air is not None else None,
                    "setpoint_c": setpoint.setpoint_c if setpoint is not None else None,
                    "door_open": door.door_open if door is not None else None,
                    # warning or critical by the alert service's rules, judged here
                    "alarm": None
                    if alarms is None
                    else alarms.state([f"{device}.{point}" for point in mine]),
                }
            )
        return JSONResponse(
            {
                "gateway": config.gateway.id,
                "uplink": bool(getattr(uplink, "connected", False)),
                "limits_ms": None if alarms is None else alarms.made_ms,
                "now_ms": time.time_ns() // 1_000_000,
                "compartments": compartments,
            }
        )

    metrics = registry_of(
        CountersCollector("coldchain_gateway", lambda: sink.counters),
        CountersCollector(
            "coldchain_gateway_cab", lambda: alarms.counters if alarms else LimitsCounters()
        ),
        CountersCollector(
            "coldchain_gateway_publisher", lambda: getattr(uplink, "counters", sink.counters)
        ),
        CountersCollector(
            "coldchain_gateway_confirm",
            lambda: getattr(getattr(uplink, "confirmations", None), "counters", sink.counters),
        ),
    )

    async def scrape(_request: Request) -> Response:
        """The gateway's counters for Prometheus (readings taken, Modbus requests, no
        responses, exceptions, bad answers, garbled lines, overruns; messages published
        and acknowledged)."""
        return Response(generate_latest(metrics), media_type="text/plain; version=0.0.4")

    # alive and making progress: a poll cycle within three of the slowest bus's intervals
    stall_s = max(30.0, 3 * max((bus.interval_s for bus in config.buses), default=10.0))
    progress = {"cycles": -1, "at": time.monotonic()}

    async def health(_request: Request) -> JSONResponse:
        now = time.monotonic()
        if sink.counters.poll_cycles != progress["cycles"]:
            progress.update(cycles=sink.counters.poll_cycles, at=now)
        reasons = []
        stalled = now - progress["at"] > stall_s
        if stalled:
            reasons.append(f"no poll cycle for {now - progress['at']:.0f} s")
        if not getattr(uplink, "connected", False):
            reasons.append("uplink down: readings are kept in the outbox")
        if sink.counters.held_in_memory:
            reasons.append(
                f"the outbox cannot be written: {sink.counters.held_in_memory} rows wait "
                f"in memory ({sink.counters.lost_in_memory} lost so far)"
            )
        if sink.watcher_failing is not None:
            reasons.append(f"the cab's own alarms cannot judge: {sink.watcher_failing}")
        state = "stalled" if stalled else "degraded" if reasons else "ok"
        body = {"service": config.gateway.id, "state": state, "reasons": reasons}
        return JSONResponse(body, status_code=200 if state == "ok" else 503)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/cab.js", script),
            Route("/latest.json", latest),
            Route("/metrics", scrape),
            Route("/health", health),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=config.cab.allowed_hosts()),
        ],
    )
