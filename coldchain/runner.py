"""Running a threaded service as a process: start it, wait for SIGINT/SIGTERM, stop it.

Health tells the truth (:mod:`coldchain.health`): the file named by
``COLDCHAIN_HEALTH_FILE`` is touched every second or so only while every part of the
service is ``ok`` (a container health check reads its age); ``COLDCHAIN_HEALTH_PORT``
(on ``COLDCHAIN_HEALTH_HOST``, 127.0.0.1 by default) serves ``/health`` and
``/metrics``. A service whose worker can no longer go on (dead) is stopped and the
process exits 1, so that its restart policy acts: never a live process with a dead
worker.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry

from coldchain.health import Health, State, serve

log = logging.getLogger("coldchain.runner")


def run_until_signalled(
    start: Callable[[], None],
    *stops: Callable[[], None],
    health: Sequence[Health],
    registry: CollectorRegistry | None = None,
    beat: Callable[[], None] | None = None,
    beat_every_s: float = 5.0,
) -> None:
    """Start, wait for SIGINT/SIGTERM (or for a worker to die), then run the stops in
    order; SystemExit(1) if a worker died."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    health_file = os.environ.get("COLDCHAIN_HEALTH_FILE")
    port = os.environ.get("COLDCHAIN_HEALTH_PORT")
    server = None
    if port:
        host = os.environ.get("COLDCHAIN_HEALTH_HOST", "127.0.0.1")
        server = serve(lambda: list(health), registry or CollectorRegistry(), host, int(port))
        log.info("health and metrics on http://%s:%s/health and /metrics", host, port)
    start()
    died = False
    next_beat = 0.0
    try:
        while not stop.wait(1.0):  # a timed wait lets the signal handlers run
            if beat is not None and time.monotonic() >= next_beat:
                next_beat = time.monotonic() + beat_every_s
                beat()  # from this thread: a stuck worker shows as stalled, not silent
            states = [h.status().state for h in health]
            if State.DEAD in states:
                died = True
                break
            if health_file and all(s is State.OK for s in states):
                Path(health_file).touch()
    finally:
        for step in stops:
            step()
        if server is not None:
            server.shutdown()
            server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if died:
        raise SystemExit(1)
