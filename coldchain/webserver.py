"""uvicorn inside a program that owns its signals (the demo, a gateway): the program's
stop stops the server, which never takes SIGINT/SIGTERM for itself."""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import uvicorn


class EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
