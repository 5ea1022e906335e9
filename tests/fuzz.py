"""Fuzzing the consumers through a real broker (issue 12): generated payloads, control
readings and control excursions, a collector and an alert service running together.

:func:`payloads` mutates the golden payloads structure-aware (a value somewhere replaced,
a field dropped or added, readings copied or reversed, the payload naming another
gateway) and adds adversarial ones (integers past 2^63, numbers that overflow a double,
NaN and Infinity, deep nesting, long strings, invalid UTF-8, truncated JSON).
:func:`run` sends them with a control gateway's readings interleaved, and returns what
it found; the test (short) and ``bench/fuzz_consumers.py`` (100,000 messages) check it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.db import make_engine, transaction, upgrade
from alerts.models import BreachRow
from alerts.repo import assign_sensor
from alerts.service import AlertService
from coldchain import wire
from coldchain.accept import Limits, accept
from coldchain.settings import MqttConfig
from coldchain.wire import Quality, Reading, ReadingsBatch, WireError
from collector import quarantine
from collector.app import Collector
from collector.config import CollectorConfig, CollectorSection, SqliteStoreConfig
from collector.store import open_store
from tests.harness import wait_for

GOLDEN = Path(__file__).parent / "golden"
SITE, GW = "county-store", "store-gw"  # the golden payloads' gateway: fuzzed
CONTROL_GW, CONTROL = "ctrl-gw", "ctrl.air"
SITES = (SITE, "county-fleet")  # the golden payloads' sites
WINDOW = 5000
MIN = 60_000

ADVERSARIAL_VALUES: list[Any] = [
    2**63,
    -(2**63) - 1,
    2**53,
    10**30,
    -1,
    0,
    1.5,
    1e308,
    -1e308,
    "",
    "x" * 100_000,
    "é\u0000\ud7ff",
    None,
    True,
    [],
    {},
    [[[[[[[[]]]]]]]],
    {"a": {"b": {"c": {}}}},
    "NaN",
]
RAW_VALUES = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1" + b"0" * 400, b"-0", b"1e-400"]


def _golden() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(GOLDEN.glob("*.json")):
        stream = "status" if path.name.startswith("status") else path.stem.split("_")[0]
        if stream in ("readings", "events", "status"):  # what gateways send (not stored)
            found.append((stream, json.loads(path.read_text())))
    return found


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _set(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node[path[0]] = _set(node[path[0]], path[1:], value)
    return node


def _mutated(rng: random.Random, stream: str, golden: dict[str, Any]) -> bytes:
    msg = json.loads(json.dumps(golden))
    how = rng.randrange(10)
    items = "readings" if stream == "readings" else "events"
    if how <= 3:  # a value somewhere replaced by an adversarial one
        path = rng.choice(list(_paths(msg))[1:])
        if rng.random() < 0.3:
            marker = "\u2063MARK\u2063"
            text = json.dumps(_set(msg, path, marker))
            return text.replace(json.dumps(marker), rng.choice(RAW_VALUES).decode()).encode()
        _set(msg, path, rng.choice(ADVERSARIAL_VALUES))
    elif how == 4:  # a field dropped, or one added
        path = rng.choice(list(_paths(msg))[1:])
        parent = msg
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and rng.random() < 0.5:
            parent.pop(path[-1], None)
        elif isinstance(parent, dict):
            parent["unexpected"] = 1
    elif how == 5 and items in msg:  # copies and disorder
        msg[items] = msg[items][::-1] + msg[items][: rng.randrange(1, 4)]
    elif how == 6:  # the payload names another gateway or site
        msg["gateway" if rng.random() < 0.5 else "site"] = "intruder-gw"
    elif how == 7:  # truncated
        raw = json.dumps(msg).encode()
        return raw[: rng.randrange(len(raw))]
    elif how == 8:  # invalid UTF-8 inside a string
        raw = json.dumps(msg).encode()
        at = raw.find(b'"', rng.randrange(len(raw)))
        return raw[: at + 1] + b"\xff\xfe" + raw[at + 1 :] if at >= 0 else raw + b"\xff"
    else:  # deep nesting
        depth = rng.choice([100, 10_000])
        return b"[" * depth + b"]" * depth
    return json.dumps(msg).encode()


def payloads(seed: int, n: int) -> Iterator[tuple[str, bytes]]:
    """``n`` fuzzed (topic, payload) pairs on the fuzzed gateway's topics."""
    rng = random.Random(seed)
    golden = _golden()
    for _ in range(n):
        stream, body = rng.choice(golden)
        # on the golden payload's own topic (a gateway publishes only on its own)
        yield f"coldchain/v1/{body['site']}/{body['gateway']}/{stream}", _mutated(rng, stream, body)


@dataclass
class Findings:
    sent: int = 0
    control_readings: int = 0
    control_excursions: int = 0
    stored_control: int = 0
    control_alarms: int = 0
    quarantined: int = 0
    quarantine_without_reason: int = 0
    #: fuzzed messages the one way in refuses that the quarantine does not hold, and
    #: quarantined ones it would take (both must be 0)
    refused_not_kept: int = 0
    kept_not_refused: int = 0
    collector_alive: bool = True
    alerts_alive: bool = True
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _control_batches(excursions: int, end_ms: int) -> list[ReadingsBatch]:
    """The control gateway's readings, one a minute: ``excursions`` times 5 minutes in
    range, 20 at -10 °C (critical for frozen meat), 10 back in range."""
    values = ([-20.0] * 5 + [-10.0] * 20 + [-20.0] * 10) * excursions
    start = end_ms - len(values) * MIN
    readings = [
        Reading(sensor=CONTROL, ts_ms=start + i * MIN, q=Quality.OK, temp_c=v)
        for i, v in enumerate(values)
    ]
    return [
        ReadingsBatch(
            v=1,
            gateway=CONTROL_GW,
            site=SITE,
            epoch=1,
            seq=i + 1,
            readings=readings[i * 5 : i * 5 + 5],
        )
        for i in range((len(readings) + 4) // 5)
    ]


def run(workdir: Path, broker_port: int, *, messages: int, excursions: int, seed: int) -> Findings:
    from tests.test_alerts_service import seed as seed_store

    store_path = workdir / "readings.sqlite"
    db_url = f"sqlite:///{workdir / 'alerts.sqlite'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    seed_store(engine, gateway=GW, site=SITE)
    with transaction(engine) as s:
        assign_sensor(
            s, gateway=CONTROL_GW, sensor=CONTROL, location_id=f"{SITE}.room", from_ms=0, actor="qa"
        )
    mqtt_config = MqttConfig(port=broker_port)
    config = CollectorConfig(
        collector=CollectorSection(id=f"fuzz-c-{seed}", group=f"fuzz-{seed}", sites=SITES),
        mqtt=mqtt_config,
        store=SqliteStoreConfig(kind="sqlite", path=store_path),
    )
    store = open_store(config.store)
    collector = Collector(config, store)
    alerts = AlertService(
        engine, mqtt_config, client_id=f"fuzz-a-{seed}", sites=SITES, on_alarm=lambda _l: None
    )
    found = Findings()
    sent: list[tuple[str, bytes]] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.connect("127.0.0.1", broker_port)
    client.loop_start()
    started = time.monotonic()
    try:
        collector.start()
        alerts.start()
        wait_for(lambda: collector.connected and alerts.connected, 20, "both connected")
        time.sleep(0.5)
        control = _control_batches(excursions, time.time_ns() // 1_000_000 - 10 * MIN)
        every = max(1, messages // max(1, len(control)))
        infos = []
        for i, (topic, payload) in enumerate(payloads(seed, messages)):
            if len(infos) >= WINDOW:  # packet ids wrap at 65,535: a window in flight
                infos[len(infos) - WINDOW].wait_for_publish(60)
            infos.append(client.publish(topic, payload, qos=1))
            sent.append((topic, payload))
            if i % every == 0 and control:
                batch = control.pop(0)
                found.control_readings += len(batch.readings)
                infos.append(
                    client.publish(
                        f"coldchain/v1/{SITE}/{CONTROL_GW}/readings", wire.encode(batch), qos=1
                    )
                )
            if i % 1000 == 0:
                found.collector_alive &= collector.consumer.alive
                found.alerts_alive &= alerts.consumer.alive
        for batch in control:
            found.control_readings += len(batch.readings)
            infos.append(
                client.publish(
                    f"coldchain/v1/{SITE}/{CONTROL_GW}/readings", wire.encode(batch), qos=1
                )
            )
        for info in infos:
            info.wait_for_publish(60)
        found.sent = len(sent)
        found.control_excursions = excursions
        controls = len(infos) - len(sent)
        to_collector = sum(1 for t, _p in sent if not t.endswith("/status")) + controls
        to_alerts = sum(1 for t, _p in sent if not t.endswith("/events")) + controls
        # at least what was sent (a retained status of an earlier run may come too), and
        # nothing more coming
        wait_for(lambda: collector.consumer.handled >= to_collector, 600, "the collector done")
        wait_for(lambda: alerts.consumer.handled >= to_alerts, 600, "the alert service done")
        wait_for(_quiet(collector.consumer, alerts.consumer), 60, "nothing more coming")
        with contextlib.suppress(AssertionError):  # a missing alarm is in the findings
            wait_for(lambda: _control_alarms(engine) >= excursions, 60, "the control alarms")
        found.collector_alive &= collector.consumer.alive
        found.alerts_alive &= alerts.consumer.alive
    finally:
        client.loop_stop()
        client.disconnect()
        collector.stop()
        alerts.stop()
        store.close()
    found.seconds = time.monotonic() - started
    found.control_alarms = _control_alarms(engine)
    engine.dispose()
    _check_store(store_path, sent, found)
    return found


def _quiet(*consumers: Any) -> Any:
    """True once every consumer has handled all it received, twice half a second apart."""
    seen: list[tuple[int, ...]] = []

    def check() -> bool:
        now = tuple(c.handled for c in consumers) + tuple(c.received for c in consumers)
        done = all(c.handled >= c.received for c in consumers) and seen[-1:] == [now]
        seen.append(now)
        time.sleep(0.5)
        return done

    return check


def _control_alarms(engine: Any) -> int:
    with Session(engine) as s:
        rows = s.execute(
            select(BreachRow).where(
                BreachRow.gateway == CONTROL_GW,
                BreachRow.kind == "high",
                BreachRow.level == "critical",
            )
        ).scalars()
        return len(list(rows))


def _check_store(path: Path, sent: list[tuple[str, bytes]], found: Findings) -> None:
    db = sqlite3.connect(path)
    try:
        found.stored_control = db.execute(
            "SELECT COUNT(*) FROM readings WHERE gateway = ?", (CONTROL_GW,)
        ).fetchone()[0]
        kept = db.execute("SELECT topic, payload, reason FROM quarantine").fetchall()
    finally:
        db.close()
    found.quarantined = len(kept)
    found.quarantine_without_reason = sum(1 for _t, _p, r in kept if not r)
    # a payload past the quarantine's bound is kept cut, its digest in the reason
    kept_set: set[tuple[str, bytes | str]] = {(t, bytes(p)) for t, p, _r in kept}
    kept_set |= {(t, r.split("sha256 ")[-1].split(";")[0]) for t, _p, r in kept if "sha256 " in r}
    limits = Limits()
    for topic, payload in sent:
        if topic.endswith("/status"):
            continue
        try:
            accept(topic, payload, limits)
            refused = False
        except WireError:
            refused = True
        key = _kept_key(topic, payload)
        if refused and key not in kept_set:
            found.refused_not_kept += 1
        if not refused and key in kept_set:
            found.kept_not_refused += 1


def _kept_key(topic: str, payload: bytes) -> tuple[str, bytes | str]:
    """How the quarantine finds this payload again: itself, or its digest if it is cut."""
    if len(payload) > quarantine.MAX_KEPT_BYTES:
        return topic, hashlib.sha256(payload).hexdigest()
    return topic, payload
