"""Serial devices that talk in lines: ASCII sensor probes and NMEA 0183 GPS receivers.

The port is opened with pyserial in non-blocking mode and read from the event loop
when its file descriptor is readable (no thread, no blocking read). A line that does
not match the device's format or fails its checksum is a :class:`GarbledLine`: kept
aside in the outbox's ``rejects`` table, counted, and reported once per change of
state. Silence longer than ``stale_after`` intervals makes fault readings (``stale``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial

from coldchain.backoff import Backoff
from coldchain.wire import Quality, Quantity, Reading
from gateway.clock import now_ms
from gateway.config import NmeaGpsBus, SerialAsciiBus
from gateway.decode import quality_of
from gateway.errors import GarbledLine
from gateway.health import Health
from gateway.nmea import Sentence, check_nmea_checksum, read_sentence, sentence_in
from gateway.profiles import AsciiProfile, NmeaProfile, load_profile
from gateway.sink import Sink

log = logging.getLogger("coldchain.gateway.serial")

MAX_LINE_BYTES = 512


class LineDevice:
    """Base for a device on its own serial port that sends lines."""

    def __init__(self, config: SerialAsciiBus | NmeaGpsBus, sink: Sink, health: Health) -> None:
        self.config = config
        self.sink = sink
        self.health = health
        self.device_id = config.devices[0].id
        self._buffer = bytearray()
        self._port: serial.Serial | None = None
        self._lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._backoff = Backoff(config.backoff_min_s, config.backoff_max_s)
        self.last_good_monotonic = time.monotonic()

    # ------------------------------------------------------------------ port handling
    def _open(self) -> None:
        cfg = self.config
        port = serial.Serial(
            cfg.port,
            baudrate=cfg.baudrate,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            bytesize=cfg.bytesize,
            timeout=0,
        )
        self._port = port
        asyncio.get_running_loop().add_reader(port.fileno(), self._readable)

    def _close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._port.fileno())
            self._port.close()
            self._port = None

    def _readable(self) -> None:
        assert self._port is not None
        try:
            data = self._port.read(4096)
        except (serial.SerialException, OSError) as exc:
            log.debug("%s read failed: %s", self.config.port, exc)
            self._close()
            self._lines.put_nowait(None)  # tells run() to reopen
            return
        self._buffer.extend(data)
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if line:
                self._lines.put_nowait(line)
        if len(self._buffer) > MAX_LINE_BYTES:
            raw = bytes(self._buffer)
            self._buffer.clear()
            self._lines.put_nowait(raw)  # will fail to parse: kept aside as garbled

    async def run(self) -> None:
        watchdog = asyncio.ensure_future(self._watchdog())
        try:
            while True:
                if self._port is None and not await self._try_open():
                    await asyncio.sleep(max(0.1, self._backoff.retry_at - time.monotonic()))
                    continue
                line = await self._lines.get()
                if line is None:
                    continue
                await self._handle(line)
        finally:
            watchdog.cancel()
            self._close()

    async def _try_open(self) -> bool:
        try:
            self._open()
        except (serial.SerialException, OSError) as exc:
            delay = self._backoff.failed()
            self.health.report(
                "device",
                self.device_id,
                "no_response",
                now_ms(),
                f"cannot open {self.config.port}: {exc}; retry in {delay:.0f} s",
            )
            return False
        self._backoff.succeeded()
        return True

    async def _handle(self, line: bytes) -> None:
        ts = now_ms()
        try:
            readings = self.parse(line, ts)
        except GarbledLine as exc:
            self.sink.counters.lines_garbled += 1
            self.health.report("device", self.device_id, "garbled", ts, exc.detail)
            await self.sink.reject(self.device_id, exc.detail, exc.raw)
            return
        self.sink.counters.lines_ok += 1
        self.last_good_monotonic = time.monotonic()
        self.health.report("device", self.device_id, "ok", ts)
        await self.sink.add_readings(readings)

    def parse(self, line: bytes, ts_ms: int) -> list[Reading]:
        raise NotImplementedError

    async def _watchdog(self) -> None:
        raise NotImplementedError


class AsciiDevice(LineDevice):
    def __init__(self, config: SerialAsciiBus, sink: Sink, health: Health) -> None:
        super().__init__(config, sink, health)
        profile = load_profile(config.devices[0].profile)
        assert isinstance(profile, AsciiProfile)
        self.profile = profile
        self._regex = re.compile(profile.line_regex)

    def parse(self, line: bytes, ts_ms: int) -> list[Reading]:
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise GarbledLine(self.device_id, "not ASCII", line) from None
        match = self._regex.match(text)
        if match is None:
            raise GarbledLine(self.device_id, "does not match the line format", line)
        if self.profile.checksum == "nmea_xor" and not check_nmea_checksum(line):
            raise GarbledLine(self.device_id, "checksum mismatch", line)
        fault = (
            self.profile.status_group is not None
            and match.group(self.profile.status_group) in self.profile.fault_status
        )
        readings = []
        for point in self.profile.points:
            sensor = f"{self.device_id}.{point.name}"
            if fault:
                readings.append(
                    Reading(
                        sensor=sensor,
                        ts_ms=ts_ms,
                        q=Quality.FAULT,
                        fault="sensor_status",
                        quantity=point.quantity,
                    )
                )
                self.health.report("sensor", sensor, "fault", ts_ms, "probe reports ER")
                continue
            value = round(float(match.group(point.group)) * point.scale + point.offset, 6)
            quality = quality_of(value, point.valid_min, point.valid_max)
            self.health.report("sensor", sensor, quality.value, ts_ms)
            reading = Reading(sensor=sensor, ts_ms=ts_ms, q=quality)
            setattr(reading, point.quantity.value, value)
            readings.append(reading)
        return readings

    async def _watchdog(self) -> None:
        limit = self.profile.interval_s * self.profile.stale_after
        while True:
            await asyncio.sleep(self.profile.interval_s)
            if time.monotonic() - self.last_good_monotonic <= limit:
                continue
            ts = now_ms()
            self.health.report(
                "device", self.device_id, "stale", ts, f"no valid line for more than {limit:.0f} s"
            )
            await self.sink.add_readings(
                [
                    Reading(
                        sensor=f"{self.device_id}.{p.name}",
                        ts_ms=ts,
                        q=Quality.FAULT,
                        fault="stale",
                        quantity=p.quantity,
                    )
                    for p in self.profile.points
                ]
            )


@dataclass(slots=True)
class Fix:
    lat_deg: float
    lon_deg: float
    speed_kmh: float | None
    course_deg: float | None
    monotonic: float
    sats: int | None = None
    hdop: float | None = None
    #: both sentences of its epoch were read (RMC's speed and course, GGA's quality)
    complete: bool = False


class GpsDevice(LineDevice):
    """NMEA 0183: RMC (and GGA) sentences; a position reading every ``interval_s``."""

    def __init__(self, config: NmeaGpsBus, sink: Sink, health: Health) -> None:
        super().__init__(config, sink, health)
        profile = load_profile(config.devices[0].profile)
        assert isinstance(profile, NmeaProfile)
        self.profile = profile
        self.sensor = f"{self.device_id}.pos"
        self.fix: Fix | None = None
        self._last_published = 0.0
        #: the last real RMC and GGA: speed and course (RMC), satellites and HDOP (GGA)
        #: go only with the other sentence of the same epoch
        self._last: dict[str, Sentence] = {}
        #: a fix whose epoch's other sentence is still to come: (fix, ts_ms, epoch)
        self._held: tuple[Fix, int, str] | None = None
        #: told the receiver's UTC (ms) with each valid RMC fix
        self.on_time: Callable[[int], None] | None = None

    def parse(self, line: bytes, ts_ms: int) -> list[Reading]:
        line = sentence_in(line)
        try:
            sentence = read_sentence(line, self.profile.accept_estimated)
        except ValueError as exc:
            raise GarbledLine(self.device_id, str(exc), line) from None
        if sentence is None or sentence.kind not in self.profile.sentences:
            return []  # other sentences (GSV, VTG …) are valid, just not used
        fix = self._fix_from(sentence)
        if fix is None:
            return []
        if sentence.utc_ms is not None and self.on_time is not None:
            self.on_time(sentence.utc_ms)
        self.fix = fix
        self.health.report("gps", self.device_id, "fix", ts_ms)
        if len(set(self.profile.sentences)) > 1 and not fix.complete:
            # the other sentence of this epoch is still to come: publish when it does
            held, self._held = self._held, (fix, ts_ms, sentence.epoch)
            if held is None or held[2] == sentence.epoch:
                return []
            fix, ts_ms = held[0], held[1]  # its pair never came: it goes alone
        else:
            self._held = None
        return self._published(fix, ts_ms)

    def _published(self, fix: Fix, ts_ms: int) -> list[Reading]:
        """A position reading, at most one per ``interval_s``."""
        if fix.monotonic - self._last_published < self.profile.interval_s:
            return []
        self._last_published = fix.monotonic
        return [
            Reading(
                sensor=self.sensor,
                ts_ms=ts_ms,
                q=Quality.OK,
                lat_deg=fix.lat_deg,
                lon_deg=fix.lon_deg,
                speed_kmh=fix.speed_kmh,
                course_deg=fix.course_deg,
                sats=fix.sats,
                hdop=fix.hdop,
            )
        ]

    def _fix_from(self, sentence: Sentence) -> Fix | None:
        """A real fix; a GGA takes speed and course only from the RMC of its own epoch
        (never the previous fix's), an RMC satellites and HDOP only from its GGA."""
        if not sentence.real or sentence.lat_deg is None or sentence.lon_deg is None:
            return None
        self._last[sentence.kind] = sentence
        rmc, gga = self._last.get("RMC"), self._last.get("GGA")
        rmc = rmc if rmc is not None and rmc.epoch == sentence.epoch else None
        gga = gga if gga is not None and gga.epoch == sentence.epoch else None
        return Fix(
            sentence.lat_deg,
            sentence.lon_deg,
            None if rmc is None else rmc.speed_kmh,
            None if rmc is None else rmc.course_deg,
            time.monotonic(),
            None if gga is None else gga.sats,
            None if gga is None else gga.hdop,
            complete=rmc is not None and gga is not None,
        )

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(min(self.profile.fix_timeout_s, self.profile.interval_s))
            fix = self.fix
            if fix is None or time.monotonic() - fix.monotonic > self.profile.fix_timeout_s:
                ts = now_ms()
                if self.health.report(
                    "gps",
                    self.device_id,
                    "no_fix",
                    ts,
                    f"no valid fix for {self.profile.fix_timeout_s:.0f} s",
                ):
                    await self.sink.add_readings(
                        [
                            Reading(
                                sensor=self.sensor,
                                ts_ms=ts,
                                q=Quality.FAULT,
                                fault="no_fix",
                                quantity=Quantity.POSITION,
                            )
                        ]
                    )
