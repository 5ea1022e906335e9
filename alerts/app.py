"""Wiring the alert service from its config file: the database (migrated), the
escalation policy and channels, the readings store for replays, the broker; then run
it until SIGINT/SIGTERM (``coldchain alerts run``)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from alerts.config import AlertsConfig
from alerts.db import make_engine, upgrade
from alerts.escalation import Escalation
from alerts.seals import KEY_ENV, audit_key
from alerts.service import AlertService
from coldchain.runner import run_until_signalled
from coldchain.settings import ConfigError
from collector.store import Store, check_secrets, open_store


def escalation_of(config: AlertsConfig) -> Escalation | None:
    """Who is told what, when; ConfigError if a step names a recipient without a route
    or a channel's secret is missing."""
    if config.escalation is None:
        return None
    return Escalation(
        config.escalation.policy(),
        config.route_map(),
        config.channel_map(),
        site_policies=config.site_policies(),
        links=None if config.links is None else config.links.links(),
    )


def run_alerts(config: AlertsConfig) -> None:
    url = config.alerts.db_url()
    escalation = escalation_of(config)
    upgrade(url)
    engine = make_engine(url)
    history: Callable[[], Store] | None = None
    if config.store is not None:
        check_secrets(config.store)  # opened lazily: a bad token must stop it now
        history = functools.partial(open_store, config.store)
    if config.audit is not None and audit_key() is None:  # checkpoints anyone could sign
        raise ConfigError("environment", [f"audit: {KEY_ENV} is not set (32+ characters)"])
    service = AlertService(
        engine,
        config.mqtt,
        client_id=config.alerts.id,
        sites=config.alerts.sites,
        escalation=escalation,
        history=history,
        anchor=None if config.audit is None else config.audit.anchor_file,
    )
    run_until_signalled(
        service.start,
        service.stop,
        engine.dispose,
        health=[service.health],
        registry=service.metrics,
        beat=lambda: service.consumer.publish_beat(
            {
                "readings": service.counters.readings,
                "alarms_raised": service.counters.alarms_raised,
                "lead": int(service.lead.held),
            }
        ),
    )
