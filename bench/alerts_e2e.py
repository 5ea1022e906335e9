"""The alert service end to end: 10,000 sensors at one reading per second through a real
Mosquitto into the real AlertService (decode, per-sensor evaluation, breaches and alarms
written to its SQLite database), measured in the service's own process.

A publisher in a child process sends the readings as gateways do (batches of 100, QoS 1),
one simulated minute of edge time per second so that the profile's delays elapse within
the run; 1 % of the sensors go out of range from second 5 (frozen-meat profile: the
critical alarm fires 15 simulated minutes later).

(a) paced: 10,000 readings per second for --seconds; for each alarm raised, the time from
    its batch's due publish time to the alarm being committed in the database; p50 and
    p99 (target p99 < 100 ms); the service's CPU share of one core.
(b) flood: the same number of readings published as fast as the broker takes them;
    readings per second the service evaluates (baseline: the evaluation-only figure of
    bench/alerts_eval.py, run on the same machine).

Usage: python bench/alerts_e2e.py [--sensors 10000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy.orm import Session

from alerts.db import make_engine, transaction, upgrade
from alerts.judge import Outcome
from alerts.models import Location, SensorAssignment, Site
from alerts.profiles import load_profiles
from alerts.repo import save_profile
from alerts.service import AlertService
from coldchain import wire, wire_batch
from coldchain.judging.breach import Breach
from coldchain.settings import MqttConfig
from coldchain.wire import Quality, Reading, Stream
from simulator.broker import LocalBroker

PER_MESSAGE = 100
SITE, GATEWAY = "bench", "bench-gw"
MIN_MS = 60_000


def payloads(sensors: int, seconds: int, t0_ms: int) -> list[list[bytes]]:
    out = []
    for sec in range(seconds):
        second = []
        for first in range(0, sensors, PER_MESSAGE):
            bodies = [
                wire.encode(
                    Reading(
                        sensor=f"s{s:05d}.temp",
                        ts_ms=t0_ms + sec * MIN_MS,
                        q=Quality.OK,
                        temp_c=-12.0 if s % 100 == 0 and sec >= 5 else -20.0 + (s % 7) * 0.1,
                    )
                )
                for s in range(first, min(first + PER_MESSAGE, sensors))
            ]
            second.append(
                wire_batch.assemble(
                    Stream.READINGS,
                    gateway=GATEWAY,
                    site=SITE,
                    epoch=1,
                    seq=sec * 1000 + first // PER_MESSAGE + 1,
                    bodies=bodies,
                )
            )
        out.append(second)
    return out


def publish(
    port: int, sensors: int, seconds: int, t0_ms: int, start_wall: float, paced: bool
) -> None:
    """The child process: a gateway-like publisher."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-pub-{paced}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    topic = wire.topic(SITE, GATEWAY, Stream.READINGS)
    data = payloads(sensors, seconds, t0_ms)
    per_second = len(data[0])
    last = None
    for sec, batches in enumerate(data):
        for i, payload in enumerate(batches):
            if paced:
                due = start_wall + sec + i / per_second
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
            last = client.publish(topic, payload, qos=1)
    if last is not None:
        last.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def seed(url: str, sensors: int, t0_ms: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    with transaction(engine) as s:
        save_profile(s, load_profiles()["frozen-meat"], actor="bench", reason="bench")
    with Session(engine) as s, s.begin():
        s.add(Site(id=SITE, name="Bench", kind="cold_store"))
        s.flush()
        rooms = (sensors + 99) // 100
        s.add_all(
            Location(
                id=f"room{r}",
                site_id=SITE,
                name=f"Room {r}",
                kind="cold_room",
                profile_id="frozen-meat",
            )
            for r in range(rooms)
        )
        s.flush()
        s.add_all(
            SensorAssignment(
                gateway=GATEWAY,
                sensor=f"s{n:05d}.temp",
                location_id=f"room{n // 100}",
                role="air",
                from_ms=t0_ms - 86_400_000,
            )
            for n in range(sensors)
        )
    engine.dispose()


class Timed(AlertService):
    """The service, noting when each alarm was committed."""

    def __init__(self, *args: object, due: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.due = due
        self.latencies_ms: list[float] = []

    def _persist(self, out: Outcome) -> None:
        raised = self.counters.alarms_raised
        super()._persist(out)  # committed when it returns
        new = self.counters.alarms_raised - raised
        if new:
            now = time.time()
            found = [b for _g, b in out.store if b.raised_ts_ms is not None][:new]
            self.latencies_ms += [(now - self.due(b)) * 1000 for b in found]  # type: ignore[operator]


def run(broker: LocalBroker, workdir: Path, sensors: int, seconds: int, paced: bool) -> None:
    total = sensors * seconds
    t0_ms = time.time_ns() // 1_000_000 - seconds * MIN_MS  # edge time ends about now
    url = f"sqlite:///{workdir / f'alerts-{paced}.sqlite'}"
    seed(url, sensors, t0_ms)
    start_wall = time.time() + 3.0
    per_second = sensors // PER_MESSAGE

    def due(breach: Breach) -> float:
        sec = (breach.raised_ts_ms - t0_ms) // MIN_MS
        index = int(breach.sensor[1:6]) // PER_MESSAGE
        return start_wall + sec + index / per_second

    service = Timed(
        make_engine(url),
        MqttConfig(port=broker.port),
        client_id=f"bench-alerts-{paced}",
        sites=(SITE,),
        on_alarm=lambda _line: None,
        due=due,
    )
    service.start()
    time.sleep(1.0)  # subscribed
    child = multiprocessing.Process(
        target=publish, args=(broker.port, sensors, seconds, t0_ms, start_wall, paced)
    )
    cpu0 = time.process_time()
    child.start()
    first: float | None = None
    deadline = time.time() + seconds + 300
    while service.counters.readings < total and time.time() < deadline:
        if first is None and service.counters.readings > 0:
            first = time.perf_counter()
        time.sleep(0.01)
    done = time.perf_counter()
    cpu = time.process_time() - cpu0
    child.join(60)
    service.stop()
    if service.counters.readings < total:
        raise SystemExit(f"only {service.counters.readings} of {total} readings evaluated")
    assert first is not None
    wall = done - first
    if paced:
        lat = sorted(service.latencies_ms)
        if not lat:
            raise SystemExit("no alarm was raised: the scenario is broken")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(
            f"(a) paced at {sensors:,} readings/s for {seconds} s through Mosquitto: "
            f"{len(lat)} alarms; due publish -> alarm committed p50 "
            f"{statistics.median(lat):.1f} ms, p99 {p99:.1f} ms (target < 100 ms); "
            f"service CPU {100 * cpu / (seconds + 3):.0f} % of one core"
        )
    else:
        print(
            f"(b) flood: {total:,} readings evaluated in {wall:.1f} s: "
            f"{total / wall:,.0f} readings/s through MQTT with breaches and alarms stored "
            f"({service.counters.alarms_raised} alarms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coldchain-bench-") as tmp:
        workdir = Path(tmp)
        broker = LocalBroker(workdir / "broker")
        broker.start()
        try:
            run(broker, workdir, args.sensors, args.seconds, paced=True)
            run(broker, workdir, args.sensors, args.seconds, paced=False)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
