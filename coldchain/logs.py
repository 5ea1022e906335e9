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
