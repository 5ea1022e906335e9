"""Running a threaded service as a process: start it, wait for SIGINT/SIGTERM, stop it.

While the service says it is healthy, the file named by ``COLDCHAIN_HEALTH_FILE`` is
touched every second or so (a container health check reads its age). A service whose
worker can no longer go on (``alive`` False) is stopped and the process exits 1, so that
its restart policy acts: never a live process with a dead worker.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path


def run_until_signalled(
    start: Callable[[], None],
    *stops: Callable[[], None],
    healthy: Callable[[], bool] | None = None,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Start, wait for SIGINT/SIGTERM (or for ``alive`` to fail), then run the stops in
    order; SystemExit(1) if the worker died."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    health_file = os.environ.get("COLDCHAIN_HEALTH_FILE")
    start()
    died = False
    try:
        while not stop.wait(1.0):  # a timed wait lets the signal handlers run
            if alive is not None and not alive():
                died = True
                break
            if health_file and healthy is not None and healthy():
                Path(health_file).touch()
    finally:
        for step in stops:
            step()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if died:
        raise SystemExit(1)
