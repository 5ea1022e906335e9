"""The alert service: readings from MQTT in, breaches and alarms out.

A thin shell around the parts that judge: the shared acknowledge-after-commit
:class:`~coldchain.mqtt.Consumer` (a persistent session of its own, subscribed to every
reading and the gateways' retained statuses), the :class:`~alerts.judge.Judge` (each
sensor), :class:`~alerts.gateways.Gateways` (online, offline, back-filling), and a
scheduler on the worker thread (reload of the settings, the live watchdog, escalation,
calibration reminders, delivery). Each outcome is stored in one transaction, a breach
with its alarm.

Hot standby (:mod:`alerts.leader`): every instance judges every reading; only the holder
of the lead writes, escalates and sends. An instance that takes the lead stores what it
found in standby, by breach identity, and goes on.

Supervised (docs/design-supervision.md): every message comes in through the one way in
(:func:`coldchain.accept.accept`); judging and storing are retried while the database is
unavailable (health degraded), and a message whose judging fails otherwise is kept
aside in the quarantine, acknowledged and counted; each scheduler job fails on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import Engine, select

from alerts.announce import alarm_line
from alerts.audit import write_checkpoint
from alerts.calibration import calibrations_by_sensor
from alerts.counters import AlertCounters
from alerts.db import reading, transaction, transient
from alerts.downlink import Downlink
from alerts.escalation import Escalation, escalate, remind_calibrations
from alerts.gateways import DEFAULT_GATEWAY_RULE, GatewayRule, Gateways
from alerts.judge import Assigned, Judge, Outcome
from alerts.leader import Lead
from alerts.models import Gateway, Location, SensorAssignment, Site
from alerts.notify import Channel, deliver_due
from alerts.reads import StoreReads
from alerts.repo import profiles_in_force, supersede_breach, sync_alarm, upsert_breach
from alerts.repo.quarantine import asked_replays, keep_aside, release
from alerts.repo.states import save_states
from coldchain import wire
from coldchain.accept import Accepted, Limits, accept
from coldchain.backoff import Backoff
from coldchain.health import CountersCollector, one_line, registry_of
from coldchain.judging.breach import Breach
from coldchain.logs import Throttled
from coldchain.mqtt import Consumer, Delivery, SessionSpec
from coldchain.settings import MqttConfig
from coldchain.wire import Stream
from collector.store import Store

log = logging.getLogger("coldchain.alerts")

#: how long the broker keeps the service's session (and queues its readings) while away
SESSION_EXPIRY_S = 7 * 24 * 3600


class AlertService:
    def __init__(
        self,
        engine: Engine,
        mqtt_config: MqttConfig,
        *,
        client_id: str = "alerts-1",
        sites: tuple[str, ...] = ("+",),
        time_scale: float = 1.0,
        on_alarm: Callable[[str], None] | None = None,
        escalation: Escalation | None = None,
        gateway_rule: GatewayRule = DEFAULT_GATEWAY_RULE,
        reload_s: float = 60.0,
        history: Callable[[], Store] | None = None,
        anchor: Path | None = None,
    ) -> None:
        self.engine = engine
        self.time_scale = time_scale
        self.on_alarm = on_alarm or (lambda line: log.warning("%s", line))
        self.counters = AlertCounters()
        self.escalation = escalation
        self.reload_s, self.anchor = reload_s, anchor  # anchor: the audit checkpoints
        reads = StoreReads(engine, history)
        #: no readings store to replay after a restart: the evaluation state is saved
        self.saves_state, self.checkpoint_s, self._next_checkpoint = history is None, 5.0, 0.0
        #: each sensor's evaluation; ``history`` opens the readings store: a series
        #: created after a start is replayed from its recent record (else its saved state)
        self.judge = Judge(reads, time_scale, self.counters)
        #: hot standby: only the lead's holder writes, escalates and sends
        self.lead = Lead(engine, client_id)
        self.lead.poll()
        self.gateways = Gateways(gateway_rule, time_scale, reads.gateway_breach)
        self._next_tick = 0.0
        self._next_reminder = 0.0
        self._next_reload = time.monotonic() + reload_s
        #: the compartments' limits, down to each gateway (for its cab)
        self.downlink = Downlink(lambda t, p: self.consumer.client.publish(t, p, 1, retain=True))
        self.reload()
        readings = [
            # not shared: every instance judges every reading (hot standby, alerts/leader.py)
            (wire.subscription(Stream.READINGS, site), 1)
            for site in sites
        ]
        # statuses are few and retained: a plain subscription gets the retained ones
        # (a shared one would not); every instance of the service sees them all
        statuses = [(wire.subscription(Stream.STATUS, site), 1) for site in sites]
        self.consumer = Consumer(
            mqtt_config,
            SessionSpec(client_id, clean_start=False, expiry_s=SESSION_EXPIRY_S),
            readings + statuses,
            self.handle,
            name="alerts",
            beat_as=("alerts", client_id),
            batch_max=100,
            tick=self._tick,
        )
        self.health = self.consumer.health
        self.limits = Limits()
        #: when the service last (re)connected to the broker: gateways' offline delays
        #: count from then at the earliest (a broker outage is not theirs)
        self._heard_since_ms: int | None = None
        self.consumer.on_connected = self._on_connected
        self._refusals = Throttled(log)
        self.refused_by: dict[str, int] = {}
        self.metrics = registry_of(
            CountersCollector(
                "coldchain_alerts",
                lambda: self.counters,
                self.health,
                gauges=lambda: {"queued_messages": self.consumer.queued},
                totals=lambda: {"messages_received": self.consumer.received},
                labelled=lambda: {"refused_by_reason": ("reason", self.refused_by)},
                levels=lambda: {
                    "gateway_backlog_readings": ("gateway", self.gateways.backlogs()),
                    "gateway_oldest_unsent_age_seconds": ("gateway", self.gateways.unsent_ages()),
                },
            )
        )

    @property
    def connected(self) -> bool:
        """Connected to the broker (the health check reads it)."""
        return self.consumer.connected

    def start(self) -> None:
        self.consumer.start()

    def stop(self) -> None:
        self.consumer.stop()
        self._job("checkpoint", self.save_states)  # a failure is said, never fatal here
        self.lead.release()

    def save_states(self) -> None:
        """Save what each series fed since the last save has under way (a delay counting,
        time toward a cumulative allowance), for a restart without a readings store."""
        if not self.saves_state or not self.lead.held or not (found := self.judge.checkpoints()):
            return
        with transaction(self.engine) as s:
            save_states(s, found, time.time_ns() // 1_000_000)
        self.judge.dirty.difference_update((g, sensor) for g, sensor, _sig, _st in found)

    def reload(self) -> None:
        """Read sensor assignments, locations, their profiles and the calibrations from
        the store; series whose limits changed start again with the new ones."""
        with reading(self.engine) as s:
            assigned = Assigned(
                profiles=profiles_in_force(s),
                locations={loc.id: loc for loc in s.execute(select(Location)).scalars()},
                sensors={
                    (a.gateway, a.sensor): a.location_id
                    for a in s.execute(
                        select(SensorAssignment).where(SensorAssignment.until_ms.is_(None))
                    ).scalars()
                },
                calibrations=calibrations_by_sensor(s),
                timezones={i: tz for i, tz in s.execute(select(Site.id, Site.timezone)).all()},
                gateway_sites={
                    i: site for i, site in s.execute(select(Gateway.id, Gateway.site_id))
                },
            )
        self.downlink.due = True  # the gateways are told their compartments' limits
        out = Outcome()
        self.judge.configure(assigned, out)
        self._persist(out)

    # ------------------------------------------------------------------ transport
    def handle(self, batch: Sequence[Delivery]) -> bool:
        """Judge and store each message; False if stopping before all are stored."""
        return all(self._take(item) for item in batch)

    def _take(self, item: Delivery) -> bool:
        try:
            taken = accept(item.topic, item.payload, self.limits)
        except wire.WireError as exc:
            self.counters.refused += 1
            self.refused_by[exc.kind] = self.refused_by.get(exc.kind, 0) + 1
            self._refusals.warning(item.topic, "refused a message on %s: %s", item.topic, exc)
            return True
        out = Outcome()  # kept across retries: what judging found is stored once
        judged = self._supervised(lambda: self._judge(taken, item.received_ms, out), item)
        if judged is not True:
            return judged is None  # None: kept aside; False: stopping
        stored = self._supervised(lambda: self._persist(out), item)
        return stored is not False

    def _judge(self, taken: Accepted, received_ms: int, out: Outcome) -> None:
        message = taken.message
        if taken.clock_ahead_ms:  # stamped by a clock ahead: the gateway's clock alarm
            out.store += self.gateways.on_clock(message.gateway, taken.clock_ahead_ms, received_ms)
        if isinstance(message, wire.ReadingsBatch):
            self.judge.process(message, self.gateways.get(message.gateway), out)
        elif isinstance(message, wire.Status):
            self._status(message, time.time_ns() // 1_000_000, out)

    def _supervised(self, step: Callable[[], None], item: Delivery) -> bool | None:
        """Run a step of taking a message: True when done; retried with backoff while
        the database is unavailable (False if stopping meanwhile); on any other error
        the message is kept aside (None)."""
        try:
            return self._retrying(step)
        except Exception as exc:
            self._keep_aside(item, exc)
            return None

    def _retrying(self, step: Callable[[], None]) -> bool:
        """Run ``step``, again with backoff while the database is unavailable (health
        degraded); False if stopping meanwhile. Any other error goes to the caller."""
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                step()
            except Exception as exc:
                if not transient(exc):
                    raise
                self.counters.database_retries += 1
                self.health.problem("database", f"unavailable: {one_line(exc)}; retrying")
                if self.consumer.wait(backoff.failed()):
                    return False
                self.health.beat()  # alive and retrying: degraded, not stalled
                continue
            self.health.clear("database")
            return True

    def _keep_aside(self, item: Delivery, exc: Exception) -> None:
        reason = f"judging failed: {type(exc).__name__}: {exc}"[:2000]
        log.error("kept a message on %s aside: %s", item.topic, reason, exc_info=exc)
        # its series may be half-fed: they are rebuilt from the store's record
        self.judge.forget_gateway(item.topic.split("/")[3] if item.topic.count("/") == 4 else "")

        def store() -> None:
            with transaction(self.engine) as s:
                self.counters.quarantine_dropped += keep_aside(
                    s, item.topic, item.payload, reason, item.received_ms
                )

        if not self.lead.held:
            self.counters.quarantined += 1
            return  # standby: the holder of the lead keeps its own copy aside
        # an error that is not "not now" while keeping it aside stops the worker: a bug
        if self._retrying(store):
            self.counters.quarantined += 1

    def _tick(self) -> None:
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + (self.escalation.tick_s if self.escalation else 1.0)
        held, won = self.lead.poll()
        if won:
            self._job("takeover", self._take_over)
        if now >= self._next_reload:
            self._next_reload = now + self.reload_s
            self._job("reload", self.reload)
            if (anchor := self.anchor) is not None and held:  # the head, signed, elsewhere
                self._job("audit-checkpoint", lambda: write_checkpoint(self.engine, anchor))
        if self.consumer.connected and self.consumer.caught_up:
            # behind on a backlog of its own (back after an outage), the last reading
            # judged is old by the wall clock: silence is judged once caught up
            self._job("watchdog", lambda: self.watch(time.time_ns() // 1_000_000))
        if not held:
            return  # standby: judged in memory, nothing written or sent
        if self.downlink.due and self.consumer.connected:
            j = self.judge
            self._job("limits", lambda: self.downlink.send(j.assigned, j.settings, self.time_scale))
        if self.saves_state and now >= self._next_checkpoint:
            self._next_checkpoint = now + self.checkpoint_s
            self._job("checkpoint", self.save_states)
        self._job("replay", self._replay_asked)
        if self.escalation is None:
            return
        e, wall = self.escalation, time.time_ns() // 1_000_000
        self._job(
            "escalation",
            lambda: escalate(self.engine, e.policy, e.routes, wall, e.site_policies, e.links),
        )
        if now >= self._next_reminder:
            self._next_reminder = now + e.reminder_every_s
            self._job(
                "reminders",
                lambda: remind_calibrations(self.engine, e.policy, e.routes, wall, e.site_policies),
            )
        self._job("delivery", lambda: self._deliver(e.channels, wall))

    def _on_connected(self, _session_present: bool) -> None:
        self._heard_since_ms = time.time_ns() // 1_000_000
        self.downlink.due = self.downlink.everything = True  # retained may have been lost

    def _take_over(self) -> None:
        """Just took the lead: store what this instance found in standby (by identity,
        so what the previous holder stored stays one breach); then it goes on writing."""
        out = Outcome()
        self.judge.take_over(out)
        self.judge.dirty.update(self.judge.series)  # saved from now on by this instance
        for gateway, gw in self.gateways.states.items():
            out.store += [(gateway, b) for b in gw.offline.values()]
        try:
            self._persist(out)
        except Exception:
            self.lead.release()  # won again on the next tick, and the takeover retried
            raise

    def _replay_asked(self) -> None:
        """Put back what an operator asked for (``coldchain quarantine replay``): each
        message taken again as if it had just come; one that fails again is kept aside
        again with today's reason."""
        with reading(self.engine) as s:
            asked = [
                (r.id, Delivery(r.topic, bytes(r.payload), r.received_ms, 0, 1, 0))
                for r in asked_replays(s)
            ]
        for row_id, delivery in asked:
            if not self._take(delivery):
                return  # stopping: asked again next start
            with transaction(self.engine) as s:
                release(s, row_id)
            log.info("replayed quarantined message %d on %s", row_id, delivery.topic)

    def _deliver(self, channels: dict[str, Channel], wall_ms: int) -> None:
        sent, failed = deliver_due(self.engine, channels, wall_ms)
        self.counters.notifications_sent += sent
        self.counters.notifications_failed += failed

    def _job(self, name: str, run: Callable[[], object]) -> None:
        """One scheduler job: a failure is this job's problem (health degraded, logged
        once per change), tried again on the next tick; it never stops the readings."""
        try:
            run()
        except Exception as exc:
            self.counters.job_failures += 1
            new = self.health.problem(name, f"failed: {one_line(exc)}; tried again next tick")
            if new and not transient(exc):
                log.error("%s failed", name, exc_info=exc)
            return
        self.health.clear(name)

    # ------------------------------------------------------------------ judging
    def process(self, batch: wire.ReadingsBatch) -> list[Breach]:
        """Evaluate one readings batch; store what changed; returns the changed breaches."""
        out = Outcome()
        changed = self.judge.process(batch, self.gateways.get(batch.gateway), out)
        self._persist(out)
        return changed

    def on_status(self, status: wire.Status, now_ms: int | None = None) -> None:
        """A gateway's retained status, its last will or a heartbeat."""
        out = Outcome()
        self._status(status, time.time_ns() // 1_000_000 if now_ms is None else now_ms, out)
        self._persist(out)

    def _status(self, status: wire.Status, now_ms: int, out: Outcome) -> None:
        self.counters.statuses += 1
        found = self.gateways.on_status(status, now_ms)
        out.store += [(status.gateway, b) for b in found.changed]
        self.judge.settle(status.gateway, found.settled, out)

    def watch(self, now_ms: int) -> None:
        """Live checks on the wall clock: gateways offline too long, sensors silent while
        their gateway is online and caught up."""
        out = Outcome(store=self.gateways.watch(now_ms, self._heard_since_ms))
        for gateway, sensors in self.gateways.expire_backfill(now_ms).items():
            self.judge.settle(gateway, sensors, out)

        def quiet(gateway: str) -> bool:
            state = self.gateways.get(gateway)
            return state is not None and state.holding

        self.judge.watch(now_ms, quiet, out)
        self._persist(out)

    # ------------------------------------------------------------------ persistence
    def _persist(self, out: Outcome) -> None:
        """Store an outcome in one transaction (each breach with its alarm); announce the
        alarms raised once it has committed."""
        if not out.store and not out.supersede:
            return
        if not self.lead.held:
            self.counters.standby_outcomes += 1
            return  # standby: the holder of the lead stores the same findings
        lines: list[str] = []
        with transaction(self.engine) as s:
            for gateway, breach in out.store:
                row = upsert_breach(s, gateway, breach)
                alarm, created = sync_alarm(s, row)
                self.counters.breaches_changed += 1
                if created:
                    self.counters.alarms_raised += 1
                    name, tz = self.judge.place(row.location_id, row.site_id)
                    lines.append(alarm_line(name, gateway, breach, row, alarm.id, tz))
            for gateway, breach in out.supersede:
                if supersede_breach(s, gateway, breach):
                    self.counters.superseded += 1
                    log.info("breach %s superseded by late data", breach.identity)
        for line in lines:
            self.on_alarm(line)
