"""The watchdog on the watchers (``coldchain watchdog run``): meant for a second machine
or an edge gateway, it watches the broker and the services' heartbeats and tells people
through its own channels when monitoring itself is down, and when it is back.

It notices: the broker unreachable (for ``broker_down_s``); a service whose heartbeat
stops (none for ``stale_s``), says dead or stopped (its last will, a clean stop), or says
degraded or stalled (store unavailable, database down, worker stuck), with the reasons
the service gave. Each change is told once; a notice that cannot be sent is tried again
on the next check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated

import msgspec
from pydantic import Field, model_validator

from alerts.config import Notifying
from alerts.notify import Channel, DeliveryError, Message
from coldchain import heartbeat
from coldchain.heartbeat import ServiceBeat
from coldchain.mqtt import Consumer, Delivery, SessionSpec
from coldchain.runner import run_until_signalled
from coldchain.settings import MqttConfig, Strict
from coldchain.wire import ID_PATTERN

log = logging.getLogger("coldchain.watchdog")


class WatchedService(Strict):
    kind: Annotated[str, Field(pattern=ID_PATTERN)]
    id: Annotated[str, Field(pattern=ID_PATTERN)]


class WatchdogSection(Strict):
    id: Annotated[str, Field(pattern=ID_PATTERN)] = "watchdog-1"
    #: the services whose heartbeats must keep coming
    services: tuple[WatchedService, ...] = ()
    broker_down_s: Annotated[float, Field(gt=0)] = 30.0
    stale_s: Annotated[float, Field(gt=0)] = 30.0
    check_s: Annotated[float, Field(gt=0)] = 2.0
    #: recipients (names under [[routes]]) of every notice
    notify: tuple[str, ...] = ()


class WatchdogConfig(Notifying):
    watchdog: WatchdogSection = WatchdogSection()
    mqtt: MqttConfig = MqttConfig()

    @model_validator(mode="after")
    def _recipients_have_routes(self) -> WatchdogConfig:
        named = {r.recipient for r in self.routes}
        missing = [n for n in self.watchdog.notify if n not in named]
        if missing:
            raise ValueError(f"watchdog.notify names {missing}, who have no [[routes]] entry")
        if not self.watchdog.notify:
            raise ValueError("watchdog.notify names nobody: the watchdog would tell no one")
        return self


def run_watchdog(config: WatchdogConfig) -> None:
    """Run until SIGINT/SIGTERM (ConfigError if a channel's secret is missing)."""
    dog = Watchdog(config, config.channel_map())
    config.route_map()  # every route's channel is configured
    run_until_signalled(dog.start, dog.stop, health=[dog.consumer.health])


@dataclass
class Watchdog:
    config: WatchdogConfig
    channels: dict[str, Channel]
    #: problems now, by subject ("broker", "alerts/alerts-1"): what was told
    problems: dict[str, str] = field(default_factory=dict)
    #: notices not yet sent (retried on the next check)
    unsent: list[Message] = field(default_factory=list)
    sent: int = 0

    def __post_init__(self) -> None:
        section = self.config.watchdog
        self._beats: dict[str, tuple[ServiceBeat, float]] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._down_since: float | None = time.monotonic()
        self.consumer = Consumer(
            self.config.mqtt,
            SessionSpec(section.id, clean_start=True),
            [(heartbeat.subscription(), 1)],
            self._handle,
            name="watchdog",
        )
        self.consumer.on_connected = lambda _present: self._broker(True)
        self.consumer.on_disconnected = lambda: self._broker(False)
        self._stop = threading.Event()

    # ------------------------------------------------------------------ input
    def _broker(self, up: bool) -> None:
        if up:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = time.monotonic()

    def _handle(self, batch: Sequence[Delivery]) -> bool:
        for item in batch:
            try:
                beat = heartbeat.decode_beat(item.payload)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("ignored a malformed heartbeat on %s: %s", item.topic, exc)
                continue
            with self._lock:
                self._beats[f"{beat.kind}/{beat.service}"] = (beat, time.monotonic())
        return True

    # ------------------------------------------------------------------ checking
    def check(self) -> None:
        """Compare what is seen with what should be; tell each change once."""
        now = time.monotonic()
        found: dict[str, str] = {}
        section = self.config.watchdog
        if self._down_since is not None and now - self._down_since >= section.broker_down_s:
            found["broker"] = (
                f"broker {self.config.mqtt.host}:{self.config.mqtt.port} unreachable for "
                f"{now - self._down_since:.0f} s: no reading reaches the collectors or the alerts"
            )
        broker_up = self._down_since is None
        for watched in section.services:
            name = f"{watched.kind}/{watched.id}"
            with self._lock:
                seen = self._beats.get(name)
            problem = self._judge(name, seen, now, broker_up)
            if problem is not None:
                found[name] = problem
        for subject, what in found.items():
            if self.problems.get(subject) != what.split(" for ")[0]:
                self._tell(f"DOWN {subject}", what)
        for subject in [s for s in self.problems if s not in found]:
            self._tell(f"RECOVERED {subject}", f"{subject} is working again")
        self.problems = {s: what.split(" for ")[0] for s, what in found.items()}
        self._flush()

    def _judge(
        self, name: str, seen: tuple[ServiceBeat, float] | None, now: float, broker_up: bool
    ) -> str | None:
        stale_s = self.config.watchdog.stale_s
        if not broker_up:
            return None  # the broker's own notice says it; beats cannot come
        if seen is None:
            waited = now - self._started
            return f"{name}: no heartbeat yet" if waited >= stale_s else None
        beat, at = seen
        if now - at >= stale_s and beat.state not in ("dead", "stopped"):
            return f"{name}: heartbeat stopped (last {beat.state}) for {now - at:.0f} s"
        if beat.state != "ok":
            reasons = "; ".join(beat.reasons) or "no reason given"
            return f"{name}: {beat.state}: {reasons}"
        return None

    def _tell(self, subject: str, body: str) -> None:
        log.warning("%s: %s", subject, body)
        severity = "warning" if subject.startswith("RECOVERED") else "critical"
        self.unsent.append(Message(f"coldchain watchdog: {subject}", body, severity, subject))

    def _flush(self) -> None:
        routes = {r.recipient: r for r in self.config.routes}
        pending, self.unsent = self.unsent, []
        for message in pending:
            failed = False
            for recipient in self.config.watchdog.notify:
                route = routes[recipient]
                try:
                    self.channels[route.channel].send(message, (route.address,))
                except DeliveryError as exc:
                    log.error("watchdog notice to %s failed: %s (retrying)", recipient, exc)
                    failed = True
            if failed:
                self.unsent.append(message)
            else:
                self.sent += 1

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.consumer.start()
        threading.Thread(target=self._loop, name="watchdog-check", daemon=True).start()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.config.watchdog.check_s):
                self.consumer.health.beat()
                self.check()
        except Exception as exc:
            # a watchdog that stopped checking must not look alive: the runner ends the
            # process (exit 1) for its restart policy
            log.critical("the watchdog's checks stopped on an error: %r", exc, exc_info=exc)
            self.consumer.health.died(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self.consumer.stop()
