"""A shared scenario for end-to-end tests: simulated devices (a reefer controller and a
T/H transmitter on one Modbus TCP port), a gateway config and process, a recorder."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from simulator.devices import ModbusServer, ModbusUnit
from tests.harness import Broker, GatewayProcess, LoopThread, Recorder, free_port

INTERVAL_S = 0.2
READINGS_PER_CYCLE = 7 + 3  # reefer controller + T/H transmitter


@dataclass
class Setup:
    gateway: GatewayProcess
    recorder: Recorder  # (None when not asked for: a subscriber changes what the broker does)
    outbox: Path
    site: str
    gw: str


EMPTY = {"taken": 0, "pending": 0, "sealed_rows": 0, "sealed_messages": 0}


def outbox_counts(path: Path) -> dict[str, int]:
    """What a gateway's outbox file holds (read-only, beside the running gateway)."""
    if not path.exists():
        return dict(EMPTY)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        if db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'meta'").fetchone()[0] == 0:
            return dict(EMPTY)  # the gateway is still creating its schema
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        pending = db.execute("SELECT COUNT(*) FROM pending WHERE stream = 'readings'").fetchone()
        sealed = db.execute(
            "SELECT COALESCE(SUM(n), 0), COUNT(*) FROM sealed WHERE stream = 'readings'"
        ).fetchone()
    finally:
        db.close()
    return {
        "taken": int(meta.get("taken.readings", 0)),
        "pending": int(pending[0]),
        "sealed_rows": int(sealed[0]),
        "sealed_messages": int(sealed[1]),
    }


def store_counts(path: Path, gateway: str) -> dict[str, int]:
    if not path.exists():
        return {"stored": 0, "quarantined": 0, "upto": 0, "gaps": 0}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        if not db.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'quarantine'"
        ).fetchone()[0]:
            return {"stored": 0, "quarantined": 0, "upto": 0, "gaps": 0}
        stored = db.execute(
            "SELECT COUNT(*) FROM readings WHERE gateway = ?", (gateway,)
        ).fetchone()[0]
        quarantined = db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        upto = db.execute(
            "SELECT COALESCE(MAX(upto), 0) FROM seq_watermark WHERE gateway = ? "
            "AND stream = 'readings'",
            (gateway,),
        ).fetchone()[0]
        gaps = db.execute(
            "SELECT COUNT(*) FROM seq_seen WHERE gateway = ? AND stream = 'readings'", (gateway,)
        ).fetchone()[0]
    finally:
        db.close()
    return {"stored": stored, "quarantined": quarantined, "upto": upto, "gaps": gaps}


def collector_config(
    path: Path,
    broker: Broker,
    store: Path,
    ident: str,
    group: str,
    site: str,
    extra_store: str = "",
) -> Path:
    path.write_text(f"""
[collector]
id = "{ident}"
group = "{group}"
sites = ["{site}"]
linger_ms = 50
retry_min_s = 0.2
retry_max_s = 1.0

[mqtt]
host = "127.0.0.1"
port = {broker.port}
keepalive_s = 5
reconnect_min_s = 1
reconnect_max_s = 1

[store]
{extra_store or f'kind = "sqlite"{chr(10)}path = "{store}"'}
""")
    return path


@pytest.fixture
def make_setup(
    tmp_path: Path, loop_thread: LoopThread, unique: str
) -> Iterator[Callable[[Broker], Setup]]:
    """Simulated devices, a gateway config pointing at ``broker``, a recorder."""
    cleanups: list[Callable[[], None]] = []

    def make(
        broker: Broker,
        record: bool = True,
        confirm: str = "broker",
        interval_s: float = INTERVAL_S,
        gateway_env: dict[str, str] | None = None,
        **outbox_settings: object,
    ) -> Setup:
        """``confirm = "broker"``: the recorder is the only subscriber, nothing publishes a
        stored watermark, so a PUBACK frees a message (the gateway-broker leg on its own;
        tests/test_zero_loss.py runs the whole path with collectors confirming)."""
        port = free_port()
        values: dict[str, float | bool] = {
            "setpoint": -20.0,
            "air": -19.5,
            "evap": -26.0,
            "run": 10.0,
            "compressor": True,
            "defrost": False,
            "door": False,
            "temp": -19.0,
            "rh": 80.0,
        }

        async def start_server() -> ModbusServer:
            server = ModbusServer(
                [
                    ModbusUnit(1, "reefer_controller", lambda: values),
                    ModbusUnit(2, "th_transmitter_int16", lambda: values),
                ],
                tcp_port=port,
            )
            await server.start()
            return server

        server = loop_thread.run(start_server())
        cleanups.append(lambda: loop_thread.run(server.stop()))
        gw = f"gw-{unique}"
        site = f"site-{unique}"  # collectors of other tests never see it
        config = tmp_path / "gateway.toml"
        text = GATEWAY_CONFIG.format(
            site=site, gw=gw, broker_port=broker.port, port=port, interval_s=interval_s
        )
        for key, value in {"confirm": confirm, **outbox_settings}.items():  # [outbox]
            line = f"{key} = {value!r}".replace("'", '"')
            text, found = re.subn(rf"^{key} = .*$", line, text, count=1, flags=re.M)
            if not found:
                text = text.replace("[outbox]\n", f"[outbox]\n{line}\n")
        config.write_text(text)
        recorder: Recorder | None = None
        if record:
            recorder = Recorder(broker.port, f"coldchain/v1/{site}/{gw}/#", f"rec-{unique}")
            cleanups.append(recorder.close)
        gateway = GatewayProcess(config, tmp_path / "gateway.log", gateway_env)
        cleanups.append(gateway.stop)
        outbox = Path(str(outbox_settings.get("path", tmp_path / "outbox.sqlite")))
        return Setup(gateway, recorder, outbox, site, gw)  # type: ignore[arg-type]

    yield make
    for cleanup in reversed(cleanups):
        cleanup()


@pytest.fixture
def setup(make_setup: Callable[[Broker], Setup], running_broker: Broker) -> Setup:
    return make_setup(running_broker)


GATEWAY_CONFIG = """
[gateway]
id = "{gw}"
site = "{site}"
status_interval_s = 0.5

[mqtt]
host = "127.0.0.1"
port = {broker_port}
keepalive_s = 5
reconnect_min_s = 1
reconnect_max_s = 1

[outbox]
path = "outbox.sqlite"
backlog_chunk = 25
backlog_rate_per_s = 150
linger_ms = 20

[[buses]]
kind = "modbus_tcp"
name = "room"
host = "127.0.0.1"
port = {port}
interval_s = {interval_s}
timeout_s = 0.5
[[buses.devices]]
id = "cr1-ctrl"
profile = "reefer_controller"
unit = 1
[[buses.devices]]
id = "cr1-th"
profile = "th_transmitter_int16"
unit = 2
"""
