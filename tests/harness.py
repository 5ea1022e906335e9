"""Real components for the tests: a Mosquitto broker we own, a background event loop for
simulated devices, an MQTT recorder, and a gateway in a subprocess.

Every process started here is stopped by its own PID with a timeout; nothing is ever
stopped by name, so the machine's own Mosquitto keeps running. All traffic is on
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from coldchain import wire
from simulator.broker import LocalBroker, free_port, stop_process

T = TypeVar("T")
__all__ = [
    "Broker",
    "CliProcess",
    "CollectorProcess",
    "GatewayProcess",
    "LoopThread",
    "Recorder",
    "TcpRelay",
    "fill",
    "free_port",
    "tmpfs",
    "wait_for",
]


def wait_for(
    predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def fill(disk: Path) -> Path:
    """Fill a small file system of our own to the last block; returns the ballast file."""
    ballast = disk / "ballast"
    with ballast.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass  # no space left: what it wrote stays
    return ballast


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of our own at ``path`` (a full disk on demand), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


class Broker(LocalBroker):
    """The demo's broker class, with a restart for the tests."""

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


class LoopThread:
    """An asyncio loop on a background thread, for simulated devices in a test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(coro))

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Received:
    topic: str
    payload: bytes
    dup: bool


class Recorder:
    """An MQTT 5 subscriber with a persistent session that keeps everything it gets."""

    def __init__(self, port: int, topic_filter: str, client_id: str) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.reconnect_delay_set(1, 2)
        self.topic_filter = topic_filter
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, keepalive=10, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("recorder did not subscribe")

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object
    ) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic_filter, qos=1)
            self._subscribed.set()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.dup)))

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def batches(self) -> list[wire.ReadingsBatch]:
        out = []
        for m in self.snapshot():
            if wire.parse_topic(m.topic).stream is wire.Stream.READINGS:
                msg = wire.decode(wire.Stream.READINGS, m.payload)
                assert isinstance(msg, wire.ReadingsBatch)
                out.append(msg)
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class CliProcess:
    """A ``coldchain`` command in a subprocess, so that a test can kill -9 it."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", *self.args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if self.env is None else {**os.environ, **self.env},
        )
        out.close()

    def kill9(self) -> None:
        assert self.proc is not None
        stop_process(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout_s=20)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class GatewayProcess(CliProcess):
    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(["gateway", "run", "--config", str(config)], log, env)
        self.config = config


class CollectorProcess(CliProcess):
    def __init__(self, config: Path, log: Path) -> None:
        super().__init__(["collector", "run", "--config", str(config)], log)
        self.config = config


class TcpRelay:
    """A TCP relay on 127.0.0.1 in front of a real server (PostgreSQL): ``stop`` drops
    every connection and refuses new ones, as a server that went away does; ``start``
    listens again on the same port."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
