"""The gateway's sink on a real outbox file on a full disk (a tmpfs of our own): polls
go on into a bounded memory buffer, the cab view's /health (a real server) says degraded while they
wait, events mark the change of state both ways, and nothing held is lost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import uvicorn

from coldchain.webserver import EmbeddedServer
from coldchain.wire import Quality, Reading, Stream
from gateway.cab import cab_app
from gateway.config import load_config
from gateway.outbox import Outbox, now_ms
from gateway.outbox_file import AsyncOutbox
from gateway.sink import Sink
from tests.harness import fill, free_port, tmpfs

CONFIG = """
[gateway]
id = "gw"
site = "s"
[outbox]
path = "{outbox}"
[cab]
port = {port}
[[buses]]
kind = "modbus_tcp"
name = "room"
host = "127.0.0.1"
[[buses.devices]]
id = "cr1-th"
profile = "th_transmitter_int16"
"""


class Uplink:
    connected = True


def cycle(n: int) -> list[Reading]:
    t = now_ms() + n * 10
    return [
        Reading(sensor=f"cr1-th.p{i}", ts_ms=t, q=Quality.OK, temp_c=-18.0 + i) for i in range(10)
    ]


def test_a_full_outbox_disk_keeps_polls_in_memory_and_health_says_so(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "2m") as disk:
        port = free_port()
        (tmp_path / "gateway.toml").write_text(
            CONFIG.format(outbox=disk / "outbox.sqlite", port=port)
        )
        config = load_config(tmp_path / "gateway.toml")
        outbox = AsyncOutbox(
            Outbox(config.outbox.path, gateway="gw", site="s", max_rows=100_000, max_age_h=24)
        )

        def health(_sink: Sink) -> tuple[int, dict[str, object]]:
            reply = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            return reply.status_code, reply.json()

        async def scenario() -> None:
            sink = Sink(outbox, lambda: None, gateway="gw", memory_rows=300)
            server = EmbeddedServer(
                uvicorn.Config(
                    cab_app(config, sink, Uplink()),
                    host="127.0.0.1",
                    port=port,
                    log_level="warning",
                )
            )
            serving = asyncio.ensure_future(server.serve())
            while not server.started:  # noqa: ASYNC110 (uvicorn sets a flag, no event)
                await asyncio.sleep(0.02)
            try:
                await steps(sink)
            finally:
                server.should_exit = True
                await asyncio.wait_for(serving, 10)

        async def steps(sink: Sink) -> None:
            await sink.add_readings(cycle(0))
            sink.counters.poll_cycles += 1
            assert (await asyncio.to_thread(health, sink))[0] == 200
            ballast = fill(disk)
            for n in range(1, 21):  # 200 readings: all held
                await sink.add_readings(cycle(n))
            assert sink.counters.held_in_memory == 200 + 1  # and the unwritable event
            assert sink.counters.lost_in_memory == 0
            assert len(sink.latest) == 10  # the cab view goes on
            status, body = await asyncio.to_thread(health, sink)
            assert status == 503 and "the outbox cannot be written" in str(body["reasons"])
            for n in range(21, 41):  # 200 more: the buffer of 300 overflows by 101
                await sink.add_readings(cycle(n))
            assert sink.counters.lost_in_memory == 101
            ballast.unlink()
            await sink.add_readings(cycle(41))
            await sink.flush()
            assert sink.counters.held_in_memory == 0
            assert (await asyncio.to_thread(health, sink))[0] == 200
            # before, the 300 held (the oldest 100 readings and the event went), the last
            assert sink.counters.readings_taken == 10 + 300 + 10

        asyncio.run(scenario())
        events = outbox.sync.seal(Stream.EVENTS, limit=100)
        assert events is not None
        states = [(e["state"], e.get("count")) for e in json.loads(events.payload)["events"]]
        assert states == [("writable", 101)], states  # the unwritable event was dropped first
        outbox.close()
