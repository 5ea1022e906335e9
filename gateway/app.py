"""A running gateway: one task per bus, the publisher, and a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any

import uvicorn

from coldchain import __version__
from coldchain.webserver import EmbeddedServer
from coldchain.wire import Event
from gateway.cab import cab_app
from gateway.cab_alarms import CabAlarms
from gateway.clock import CLOCK, ClockCheck, describe_span, now_ms
from gateway.config import GatewayConfig, ModbusRtuBus, ModbusTcpBus, NmeaGpsBus, SerialAsciiBus
from gateway.errors import TaskFailed
from gateway.health import Health
from gateway.modbus_bus import ModbusBus
from gateway.outbox import Outbox
from gateway.outbox_file import AsyncOutbox
from gateway.publisher import Publisher
from gateway.serial_bus import AsciiDevice, GpsDevice
from gateway.sink import Sink

log = logging.getLogger("coldchain.gateway")

#: unsent for longer than this, a reading is a backlog (not the cycle being sent)
BEHIND_MS = 60_000


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        box = config.outbox
        self.outbox = AsyncOutbox(
            Outbox(
                box.path,
                gateway=config.gateway.id,
                site=config.gateway.site,
                max_rows=box.max_rows,
                max_age_h=box.max_age_h,
                encoding=box.encoding,
            )
        )
        CLOCK.start_from(self.outbox.sync.newest_ms)  # a clock set back repeats no stamp
        self.publisher = Publisher(config, self.outbox, __version__)
        self.sink = Sink(
            self.outbox,
            self.publisher.notify,
            gateway=config.gateway.id,
            memory_rows=box.memory_rows,
        )
        self.health = Health(self.sink.add_event)
        #: a cab view judges its compartments by the limits the alert service sends down
        self.cab_alarms: CabAlarms | None = None
        if config.cab is not None:
            self.cab_alarms = CabAlarms(box.path.parent / f"{box.path.stem}.limits.json")
            self.publisher.on_limits = self.cab_alarms.take
            self.sink.watchers.append(self.cab_alarms.feed)
        self.publisher.confirmations.went_back = lambda detail: self.health.report(
            "outbox", config.gateway.id, "went_back", now_ms(), detail[:256]
        )
        gw_id = config.gateway.id
        self.clock_check = ClockCheck(
            lambda state, detail: self.health.report("clock", gw_id, state, now_ms(), detail),
            tolerance_ms=int(config.gateway.clock_tolerance_s * 1000),
        )
        self.publisher.confirmations.on_time = lambda ref: self.clock_check.observe(
            ref, "collector"
        )
        CLOCK.on_step_back = self._clock_stepped_back
        self.buses: list[ModbusBus | AsciiDevice | GpsDevice] = []
        for bus in config.buses:
            if isinstance(bus, ModbusTcpBus | ModbusRtuBus):
                self.buses.append(ModbusBus(bus, self.sink, self.health))
            elif isinstance(bus, SerialAsciiBus):
                self.buses.append(AsciiDevice(bus, self.sink, self.health))
            elif isinstance(bus, NmeaGpsBus):
                gps = GpsDevice(bus, self.sink, self.health)
                gps.on_time = lambda ref: self.clock_check.observe(ref, "GPS receiver")
                self.buses.append(gps)
        self._stop = asyncio.Event()
        #: the error of the first task that died (the gateway then stops, and says so)
        self.failure: BaseException | None = None
        #: the event loop it runs on (a clock step seen on another thread is sent there)
        self._loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        self._stop.set()

    def _clock_stepped_back(self, step_ms: int, absorbed: bool) -> None:
        what = (
            "stamps slow down until it has caught up"
            if absorbed
            else "too far to absorb: stamps follow it"
        )
        detail = f"the wall clock went back {describe_span(step_ms)}; {what}"
        log.warning("gateway %s: %s", self.config.gateway.id, detail)
        event = Event(now_ms(), "clock", self.config.gateway.id, "stepped_back", detail)
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not running: the log line is the record
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:  # seen on the outbox's worker thread, while sealing
            on_loop = False
        if on_loop:
            self.sink.add_event(event)
        else:
            loop.call_soon_threadsafe(self.sink.add_event, event)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        gw = self.config.gateway
        log.info(
            "gateway %s (site %s) starting: %d buses, outbox %s",
            gw.id,
            gw.site,
            len(self.buses),
            self.config.outbox.path,
        )
        self.health.report("gateway", gw.id, "started", now_ms(), f"version {__version__}")
        replaced = self.outbox.sync.replaced
        if replaced is not None:  # a new epoch: say what became of the old outbox
            log.error("%s; a new outbox starts epoch %d", replaced, self.outbox.sync.epoch)
            self.health.report("outbox", gw.id, "replaced", now_ms(), replaced[:256])
        tasks: list[asyncio.Task[Any]] = [self._spawn(bus.run()) for bus in self.buses]
        publisher = self._spawn(self.publisher.run())
        tasks.append(self._spawn(self._heartbeat()))
        cab = self._cab_server()
        if cab is not None:
            tasks.append(self._spawn(cab.serve()))
        try:
            await self._stop.wait()
        finally:
            if cab is not None:
                cab.should_exit = True
            await _cancel(tasks)
            self.health.report("gateway", gw.id, "stopping", now_ms())
            await self.sink.flush()
            if not await self.publisher.drain(self.config.outbox.drain_on_stop_s):
                stats = await self.outbox.call(self.outbox.sync.stats)
                log.warning(
                    "stopping with %d rows still buffered in the outbox; they go "
                    "first at the next start",
                    stats.pending + stats.sealed_rows,
                )
            await self.publisher.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(publisher, 5)
            self.outbox.close()
            log.info("gateway %s stopped", gw.id)
        if self.failure is not None:
            raise TaskFailed(f"a gateway task died: {self.failure!r}") from self.failure

    def _cab_server(self) -> EmbeddedServer | None:
        cab = self.config.cab
        if cab is None:
            return None
        app = cab_app(self.config, self.sink, self.publisher, self.cab_alarms)
        log.info("cab view on http://%s:%d/", cab.host, cab.port)
        return EmbeddedServer(
            uvicorn.Config(app, host=cab.host, port=cab.port, log_level="warning", lifespan="off")
        )

    async def _heartbeat(self) -> None:
        """Retained status with counters, so a monitoring screen sees backlog and faults."""
        while True:
            await asyncio.sleep(self.config.gateway.status_interval_s)
            if self.publisher.connected:
                self.publisher.publish_status("online", stats=await self.stats())

    async def stats(self) -> dict[str, int]:
        box = await self.outbox.call(self.outbox.sync.stats)
        now = now_ms()
        behind, oldest_ms = await self.outbox.call(self.outbox.sync.behind, now - BEHIND_MS)
        c = self.sink.counters
        return {
            "readings_taken": c.readings_taken,
            "readings_acked": self.publisher.counters.acked_readings,
            "backlog": box.pending + box.sealed_rows,
            # a backlog: unsent for longer than a minute (not the cycle being sent)
            "behind": behind,
            "oldest_unsent_age_s": 0 if oldest_ms is None else max(0, (now - oldest_ms) // 1000),
            # published and not yet confirmed stored by a collector, and for how long
            "unconfirmed": box.unconfirmed,
            "oldest_unconfirmed_age_s": 0
            if box.oldest_unconfirmed_ms is None
            else max(0, (now - box.oldest_unconfirmed_ms) // 1000),
            "resent_messages": self.publisher.confirmations.counters.resent_messages,
            # what "not confirmed in time" means for this gateway (the board reads it)
            "confirm_timeout_s": int(self.config.outbox.confirm_timeout_s),
            "dropped": box.dropped,
            "rejects": box.rejects,
            "modbus_requests": c.modbus_requests,
            "modbus_no_response": c.modbus_no_response,
            "modbus_exceptions": c.modbus_exceptions,
            "modbus_bad_responses": c.modbus_bad_responses,
            "bus_failures": c.bus_failures,
            "lines_garbled": c.lines_garbled,
            "overruns": c.overruns,
            "held_in_memory": c.held_in_memory,
            "lost_in_memory": c.lost_in_memory,
            "clock_steps_back": CLOCK.steps_back,
            **self.clock_check.stats(),
        }

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.critical("a gateway task died: %r; stopping", exc, exc_info=exc)
            self.failure = self.failure or exc
            self._stop.set()


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait for them, cancelling again what goes on: Python 3.11's
    ``asyncio.wait_for`` (under pymodbus's requests) loses a cancellation that comes as
    the answer does, and the poller then polls on while the gateway waits for it."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(20):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.5)
    log.error("%d tasks did not stop when cancelled: stopping without them", len(pending))


def run_gateway(config: GatewayConfig) -> None:
    async def main() -> None:
        gateway = Gateway(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, gateway.stop)
        await gateway.run()

    asyncio.run(main())
