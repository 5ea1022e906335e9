"""What the alert service knows of each gateway: online or offline (its retained status
and last will), back-filling while its buffered readings drain, and the gateway-offline
breaches (warning, then critical) while it stays away, and the breach of a gateway whose
clock is off (from its heartbeat's own check, or from readings stamped too far ahead).
Pure bookkeeping: it returns the breaches that changed; the service stores them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from alerts.repo import GATEWAY_WIDE
from coldchain import wire
from coldchain.judging.breach import MINUTE_MS, Breach, EndReason, Kind, Level

log = logging.getLogger("coldchain.alerts")


@dataclass
class GatewayState:
    """What the retained status and the heartbeats say of a gateway."""

    online: bool = True
    #: newest edge time seen from it (readings, heartbeats)
    last_seen_ms: int | None = None
    offline_since_ms: int | None = None
    reason: str | None = None
    #: back online with buffered readings still draining (heartbeat ``backlog`` > 0):
    #: gaps in its sensors' data are held, not judged, until it has caught up
    backfilling: bool = False
    backfill_since_ms: int | None = None
    #: stopped on purpose (its clean offline status, reason ``shutdown``): no alarm
    planned: bool = False
    #: readings its last heartbeat reported not yet sent, and the age of the oldest
    backlog: int = 0
    oldest_unsent_age_s: int = 0
    offline: dict[Level, Breach] = field(default_factory=dict)
    #: sensors whose judgement waits until the gateway has caught up
    held: set[str] = field(default_factory=set)
    #: the ongoing "clock is off" breach
    clock: Breach | None = None

    @property
    def holding(self) -> bool:
        """Its sensors' gaps are not judged now (offline, or back-filling)."""
        return self.backfilling or not self.online

    def seen(self, ts_ms: int) -> None:
        if self.last_seen_ms is None or ts_ms > self.last_seen_ms:
            self.last_seen_ms = ts_ms


@dataclass(frozen=True)
class GatewayRule:
    """Gateway offline (its last will; a planned stop raises nothing): warning, then
    critical, after these many minutes without it (DOMAIN.md: yellow after about an hour,
    red at two)."""

    levels: tuple[tuple[Level, float], ...] = ((Level.WARNING, 10.0), (Level.CRITICAL, 120.0))
    #: the longest a gateway's back-filling may hold its sensors' no-data judgement: past
    #: it the gaps are judged anyway (a heartbeat that never reports a drained outbox)
    backfill_max_min: float = 60.0
    #: a gateway's clock further off than this is a warning (its readings' times are
    #: doubtful); it ends when the gateway reports it within half of it again
    clock_tolerance_min: float = 1.0


DEFAULT_GATEWAY_RULE = GatewayRule()

#: the reason of the clean offline status a gateway publishes when it is stopped
PLANNED_STOP = "shutdown"

#: the ongoing gateway-wide breach of a kind and level stored before a restart, if any
Adopt = Callable[[str, Kind, Level], Breach | None]


@dataclass
class StatusOutcome:
    """What a status changed: breaches to store, and the held sensors of a gateway that
    has caught up (judge them on their complete record now)."""

    changed: list[Breach] = field(default_factory=list)
    settled: set[str] = field(default_factory=set)


class Gateways:
    def __init__(self, rule: GatewayRule, time_scale: float, adopt: Adopt) -> None:
        self.rule = rule
        self.time_scale = time_scale
        self._adopt_breach = adopt
        self.states: dict[str, GatewayState] = {}

    def get(self, gateway: str) -> GatewayState | None:
        return self.states.get(gateway)

    def backlogs(self) -> dict[str, int]:
        """Each gateway's unsent readings, as its last heartbeat reported them."""
        return {gateway: state.backlog for gateway, state in self.states.items()}

    def unsent_ages(self) -> dict[str, int]:
        """The age of each gateway's oldest unsent reading, in seconds."""
        return {gateway: state.oldest_unsent_age_s for gateway, state in self.states.items()}

    def on_status(self, status: wire.Status, now_ms: int) -> StatusOutcome:
        """A gateway's retained status, its last will or a heartbeat."""
        out = StatusOutcome()
        gw = self.states.get(status.gateway)
        if gw is None:
            gw = self.states[status.gateway] = self._adopt(status.gateway)
        if status.state == "offline":
            gw.planned = status.reason == PLANNED_STOP
            if gw.online:
                gw.online, gw.reason = False, status.reason
                # the will was written at connect time: the outage began after the last
                # thing heard from the gateway, or now if nothing was
                gw.offline_since_ms = gw.last_seen_ms if gw.last_seen_ms is not None else now_ms
                log.warning("gateway %s offline (%s)", status.gateway, status.reason or "stopped")
            return out
        gw.seen(min(status.ts_ms, now_ms))  # a clock ahead does not make it fresher
        if not gw.online or gw.offline:
            for breach in gw.offline.values():
                breach.end_ts_ms = max(status.ts_ms, breach.start_ts_ms)
                breach.end_reason = EndReason.BACK_ONLINE
                out.changed.append(breach)
            if not gw.online:
                log.warning("gateway %s back online", status.gateway)
            gw.offline, gw.online, gw.offline_since_ms = {}, True, None
            gw.planned = False
            gw.backfilling = True  # until a heartbeat says its outbox has drained
        if status.stats is not None and "clock_ahead_ms" in status.stats:
            offset = status.stats["clock_ahead_ms"] - status.stats.get("clock_behind_ms", 0)
            out.changed += [b for _, b in self.on_clock(status.gateway, offset, now_ms)]
        if status.stats is not None:
            gw.backlog = status.stats.get("backlog", 0)
            gw.oldest_unsent_age_s = status.stats.get("oldest_unsent_age_s", 0)
            # "behind": unsent readings older than a poll cycle or so (what is in the
            # cycle being sent is not a backlog); older gateways report only "backlog"
            backfilling = status.stats.get("behind", gw.backlog) > 0
            if gw.backfilling and not backfilling:
                out.settled, gw.held = gw.held, set()
            gw.backfilling = backfilling
        if not gw.backfilling:
            gw.backfill_since_ms = None
        elif gw.backfill_since_ms is None:
            gw.backfill_since_ms = now_ms
        return out

    def expire_backfill(self, now_ms: int) -> dict[str, set[str]]:
        """Back-filling held longer than the bound ends: the held sensors of each such
        gateway, to be judged now on what they have."""
        bound_ms = int(self.rule.backfill_max_min * MINUTE_MS / self.time_scale)
        settled: dict[str, set[str]] = {}
        for gateway, gw in self.states.items():
            since = gw.backfill_since_ms
            if gw.backfilling and since is not None and now_ms - since > bound_ms:
                log.warning(
                    "gateway %s still back-filling after %.0f min: its sensors are judged now",
                    gateway,
                    (now_ms - since) / MINUTE_MS,
                )
                gw.backfilling, gw.backfill_since_ms = False, None
                settled[gateway], gw.held = gw.held, set()
        return settled

    def on_clock(self, gateway: str, offset_ms: int, now_ms: int) -> list[tuple[str, Breach]]:
        """How far the gateway's clock is off (ahead > 0): the clock breach opens past the
        tolerance and ends within half of it."""
        gw = self.states.get(gateway)
        if gw is None:
            gw = self.states[gateway] = self._adopt(gateway)
        tolerance_ms = self.rule.clock_tolerance_min * MINUTE_MS
        breach = gw.clock
        if breach is None and abs(offset_ms) > tolerance_ms:
            way = "ahead" if offset_ms > 0 else "behind"
            off_min = round(abs(offset_ms) / MINUTE_MS, 1)
            log.warning("gateway %s: its clock is %s min %s", gateway, off_min, way)
            settings = {"off_min": off_min, "way": way, "tolerance_min": tolerance_ms / MINUTE_MS}
            breach = Breach(GATEWAY_WIDE, Kind.GATEWAY_CLOCK, Level.WARNING, now_ms, now_ms)
            breach.settings = settings
            gw.clock = breach
            return [(gateway, breach)]
        if breach is not None and abs(offset_ms) < tolerance_ms / 2:
            log.info("gateway %s: its clock is right again", gateway)
            breach.end_ts_ms, breach.end_reason = (
                max(now_ms, breach.start_ts_ms),
                EndReason.CLOCK_RIGHT,
            )
            gw.clock = None
            return [(gateway, breach)]
        return []

    def _adopt(self, gateway: str) -> GatewayState:
        """A gateway first heard of since start: ongoing offline breaches stored before a
        restart are taken over (they stay one breach each)."""
        gw = GatewayState(backfilling=True)
        for level, _delay in self.rule.levels:
            breach = self._adopt_breach(gateway, Kind.GATEWAY_OFFLINE, level)
            if breach is not None:
                gw.online, gw.offline_since_ms = False, breach.start_ts_ms
                gw.offline[level] = breach
        gw.clock = self._adopt_breach(gateway, Kind.GATEWAY_CLOCK, Level.WARNING)
        return gw

    def watch(self, now_ms: int, heard_since_ms: int | None = None) -> list[tuple[str, Breach]]:
        """Gateways offline too long on the wall clock: their new offline breaches. The
        delay counts from ``heard_since_ms`` at the earliest (since the service last
        reached the broker: while the broker was down, nobody could hear a gateway)."""
        found: list[tuple[str, Breach]] = []
        for gateway, gw in self.states.items():
            if gw.online or gw.offline_since_ms is None or gw.planned:
                continue  # a planned stop says so and raises no alarm
            for level, delay_min in self.rule.levels:
                delay_ms = int(delay_min * MINUTE_MS / self.time_scale)
                start = gw.offline_since_ms
                counted_from = max(start, heard_since_ms or start)
                if level in gw.offline or now_ms - counted_from < delay_ms:
                    continue
                breach = Breach(
                    GATEWAY_WIDE,
                    Kind.GATEWAY_OFFLINE,
                    level,
                    start,
                    counted_from + delay_ms,
                    settings={"offline_min": delay_min, "reason": gw.reason or "stopped"},
                )
                gw.offline[level] = breach
                found.append((gateway, breach))
        return found
