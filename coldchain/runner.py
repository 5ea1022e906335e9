"""Running a threaded service as a process: start it, wait for SIGINT/SIGTERM, stop it.

While the service says it is healthy, the file named by ``COLDCHAIN_HEALTH_FILE`` is
touched every second or so (a container health check reads its age).
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
) -> None:
    """Start, wait for SIGINT/SIGTERM, then run the stops in order."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    health_file = os.environ.get("COLDCHAIN_HEALTH_FILE")
    start()
    try:
        while not stop.wait(1.0):  # a timed wait lets the signal handlers run
            if health_file and healthy is not None and healthy():
                Path(health_file).touch()
    finally:
        for step in stops:
            step()
