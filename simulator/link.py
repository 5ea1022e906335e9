"""A truck's mobile uplink: a TCP relay to the broker that can lose signal.

The truck gateway connects to the relay instead of the broker. ``down()`` cuts every
open connection and refuses new ones until ``up()``, as a valley without coverage does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("coldchain.sim.link")


class Uplink:
    def __init__(self, name: str, target_host: str, target_port: int, listen_port: int = 0) -> None:
        self.name = name
        self.target = (target_host, target_port)
        self.listen_port = listen_port
        self.is_up = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def down(self) -> None:
        if self.is_up:
            log.info("uplink %s: signal lost", self.name)
        self.is_up = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def up(self) -> None:
        if not self.is_up:
            log.info("uplink %s: signal back", self.name)
        self.is_up = True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.is_up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
