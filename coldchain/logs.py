"""Logging set-up shared by every command: one line per event, UTC timestamps."""

from __future__ import annotations

import logging
import time


def setup(level: str = "INFO") -> None:
    formatter = logging.Formatter(
        "%(asctime)sZ %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up is chatter


class Throttled:
    """Log a kind of event once per key, then at most once per ``every_s`` with how many
    came meanwhile: a flood of bad messages is counted, not written out one by one."""

    def __init__(self, logger: logging.Logger, every_s: float = 60.0) -> None:
        self.logger = logger
        self.every_s = every_s
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.every_s:
            self._last[key] = (last[0], last[1] + 1)
            return
        more = f" (and {last[1]} more since the last line)" if last and last[1] else ""
        self.logger.warning(message + more, *args)
        if len(self._last) >= 1000 and key not in self._last:  # bounded, oldest first
            del self._last[next(iter(self._last))]
        self._last[key] = (now, 0)
