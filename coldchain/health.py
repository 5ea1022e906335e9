"""Health that tells the truth, and the metrics beside it (docs/design-supervision.md).

A :class:`Health` is one service's state: the worker's last beat, the problems raised
and cleared by name (``store``, ``database``, ``broker``, a scheduler job) with their
reasons and since when, and whether the worker died. :meth:`Health.status` derives
``ok``, ``degraded``, ``stalled`` or ``dead`` from it; a change of problem is logged once
when it begins and once when it ends, never per retry.

:class:`CountersCollector` exports a service's counters (a dataclass of ints) to
Prometheus as they are, read at scrape time; :func:`serve` answers ``GET /health``
(200 when ok, 503 otherwise, JSON with the reasons) and ``GET /metrics``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("coldchain.health")


def one_line(exc: BaseException) -> str:
    """An exception in one line, for a health reason: a driver's message can run over
    many."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class State(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    STALLED = "stalled"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Status:
    service: str
    state: State
    #: what is wrong, one line each ("store: disk full (for 12 s)")
    reasons: tuple[str, ...]
    beat_age_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "state": self.state.value,
            "reasons": list(self.reasons),
            "beat_age_s": round(self.beat_age_s, 1),
        }


class Health:
    def __init__(
        self, service: str, stall_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.service = service
        self.stall_s = stall_s
        self._clock = clock
        self._lock = threading.Lock()
        self._beat = clock()
        self._problems: dict[str, tuple[str, float]] = {}
        self._dead: str | None = None
        #: problems raised since start, by name (a metric)
        self.raised: dict[str, int] = {}

    def beat(self) -> None:
        """The worker went round its loop: it handled work or found none."""
        self._beat = self._clock()

    def problem(self, name: str, reason: str, *, quiet: bool = False) -> bool:
        """Raise (or re-state) a problem; True when it is new or its reason changed
        (then it is logged, once, unless ``quiet``: a state expected at start)."""
        with self._lock:
            known = self._problems.get(name)
            if known is not None and known[0] == reason:
                return False
            since = known[1] if known is not None else self._clock()
            self._problems[name] = (reason, since)
            if known is None and not quiet:
                self.raised[name] = self.raised.get(name, 0) + 1
        if quiet:
            return True
        log.error("%s: %s: %s", self.service, name, reason)
        return True

    def clear(self, name: str) -> float | None:
        """End a problem; returns how long it lasted (None if it was not raised)."""
        with self._lock:
            known = self._problems.pop(name, None)
        if known is None:
            return None
        lasted = self._clock() - known[1]
        log.info("%s: %s back after %.0f s", self.service, name, lasted)
        return lasted

    def has(self, name: str) -> bool:
        return name in self._problems

    def died(self, reason: str) -> None:
        self._dead = reason

    @property
    def alive(self) -> bool:
        return self._dead is None

    def status(self) -> Status:
        now = self._clock()
        age = now - self._beat
        if self._dead is not None:
            return Status(self.service, State.DEAD, (f"worker stopped: {self._dead}",), age)
        with self._lock:
            reasons = tuple(
                f"{name}: {reason} (for {now - since:.0f} s)"
                for name, (reason, since) in sorted(self._problems.items())
            )
        if age > self.stall_s:
            return Status(
                self.service,
                State.STALLED,
                (f"worker has not made progress for {age:.0f} s", *reasons),
                age,
            )
        return Status(self.service, State.DEGRADED if reasons else State.OK, reasons, age)


#: counters by one label: metric name -> (label name, {label value: count})
Labelled = dict[str, tuple[str, Mapping[str, int]]]


class CountersCollector(Collector):
    """A service's counters for Prometheus, read at scrape time: each int field of a
    dataclass is a counter ``{prefix}_{field}_total``; ``totals`` adds counters kept
    elsewhere, ``labelled`` counters by one label, ``gauges`` levels, ``levels`` levels
    by one label."""

    def __init__(
        self,
        prefix: str,
        counters: Callable[[], object],
        health: Health | None = None,
        gauges: Callable[[], dict[str, float]] | None = None,
        totals: Callable[[], dict[str, int]] | None = None,
        labelled: Callable[[], Labelled] | None = None,
        levels: Callable[[], Labelled] | None = None,
    ) -> None:
        self.prefix = prefix
        self._counters = counters
        self._health = health
        self._gauges = gauges
        self._totals = totals
        self._labelled = labelled
        self._levels = levels

    def collect(self) -> Iterator[Metric]:
        source = self._counters()
        totals = {
            f.name: getattr(source, f.name)
            for f in dataclasses.fields(source)  # type: ignore[arg-type]
            if isinstance(getattr(source, f.name), int)
        }
        totals.update(self._totals() if self._totals else {})
        for name, value in totals.items():
            yield CounterMetricFamily(f"{self.prefix}_{name}", name.replace("_", " "), value=value)
        for name, (label, counts) in (self._labelled() if self._labelled else {}).items():
            family = CounterMetricFamily(
                f"{self.prefix}_{name}", f"{name.replace('_', ' ')} by {label}", labels=[label]
            )
            for value, count in sorted(counts.items()):
                family.add_metric([value], count)
            yield family
        for name, (label, counts) in (self._levels() if self._levels else {}).items():
            gauge = GaugeMetricFamily(
                f"{self.prefix}_{name}", f"{name.replace('_', ' ')} by {label}", labels=[label]
            )
            for value, count in sorted(counts.items()):
                gauge.add_metric([value], count)
            yield gauge
        for name, level in (self._gauges() if self._gauges else {}).items():
            yield GaugeMetricFamily(f"{self.prefix}_{name}", name.replace("_", " "), value=level)
        if self._health is not None:
            yield from _health_metrics(self.prefix, self._health)


def _health_metrics(prefix: str, health: Health) -> Iterable[Metric]:
    status = health.status()
    yield GaugeMetricFamily(
        f"{prefix}_health_ok",
        "1 when the service is ok",
        value=1.0 if status.state is State.OK else 0.0,
    )
    yield GaugeMetricFamily(
        f"{prefix}_worker_beat_age_seconds",
        "seconds since the worker last went round its loop",
        value=status.beat_age_s,
    )
    raised = CounterMetricFamily(
        f"{prefix}_problems", "problems raised since start, by name", labels=["problem"]
    )
    for name, count in sorted(health.raised.items()):
        raised.add_metric([name], count)
    yield raised


def registry_of(*collectors: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


def serve(
    healths: Callable[[], list[Health]], registry: CollectorRegistry, host: str, port: int
) -> ThreadingHTTPServer:
    """``GET /health`` and ``GET /metrics`` on a daemon thread; returns the server (its
    ``server_address`` has the port when 0 was asked)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, "text/plain; version=0.0.4", generate_latest(registry))
            elif self.path == "/health":
                statuses = [h.status() for h in healths()]
                ok = all(s.state is State.OK for s in statuses)
                body = {"ok": ok, "services": [s.as_dict() for s in statuses]}
                self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes every few seconds are not news

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server
