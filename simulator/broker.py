"""A Mosquitto broker of our own, for the demo and the tests.

It listens on 127.0.0.1 only, on a port we choose, with persistence in a folder we
own, and is stopped by its PID (never by name: the machine may run its own Mosquitto).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct free ports on 127.0.0.1 (held together while choosing)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if found is None:
        raise RuntimeError("mosquitto is not installed: apt-get install mosquitto")
    return found


#: what a broker for coldchain needs beyond persistence (README, "What a broker needs")
BROKER_NEEDS = (
    "max_queued_messages 1000000",
    "max_queued_bytes 268435456",
    "message_size_limit 1048576",
    "max_packet_size 1114112",
)


class LocalBroker:
    def __init__(
        self, workdir: Path, port: int | None = None, extra_lines: list[str] | None = None
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "data").mkdir(exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {workdir / 'data'}/",
            "autosave_interval 1",
            *BROKER_NEEDS,
            "max_inflight_messages 100",
            f"log_dest file {workdir / 'mosquitto.log'}",
        ]
        lines += extra_lines or []
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise it drops to 'mosquitto' and cannot write
        self.config = workdir / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = 10) -> None:
        if self.running:
            return
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not self._accepts():
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on port {self.port} in {timeout_s} s")
            time.sleep(0.05)

    def _accepts(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.workdir / "mosquitto.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"mosquitto exited with code {self.proc.returncode}: {log}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.2):
                return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig, timeout_s)


def stop_process(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout_s: float = 10
) -> None:
    """Stop one process we started, by its PID: ``sig``, then SIGKILL after a timeout."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)
