"""Alarm evaluation throughput and latency: 10,000 sensors at one reading per second.

Readings arrive as wire payloads (batches of 100, as gateways send them); each batch is
decoded and every reading fed to its sensor's streaming evaluator (frozen-meat profile:
warning and critical, high, with the daily cumulative allowance, fault and no-data
detectors). 1 % of the sensors go through a long excursion, so alarms fire throughout.

(a) sustained: as fast as one thread can go; readings per second on one core.
(b) paced: real time, 10,000 readings per second for --seconds; for every reading that
    raises an alarm, the time from its batch's arrival (when it was due) to the alarm
    being raised; p50 and p99 (target p99 < 100 ms), plus the CPU share used.

Usage: python bench/alerts_eval.py [--sensors 10000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

from alerts.profiles import load_profiles
from coldchain import wire, wire_batch
from coldchain.judging.breach import Level, Point
from coldchain.judging.rules import SensorEvaluator
from coldchain.wire import Quality, Reading, Stream

PER_MESSAGE = 100


def make_payloads(sensors: int, seconds: int, t0_ms: int) -> list[list[bytes]]:
    """payloads[second] = the batches of that second."""
    out = []
    for sec in range(seconds):
        batches = []
        for first in range(0, sensors, PER_MESSAGE):
            readings = []
            for s in range(first, min(first + PER_MESSAGE, sensors)):
                temp = -20.0 + (s % 7) * 0.1
                if s % 100 == 0 and sec >= 5:  # 1 %: the door stays open from second 5
                    temp = -12.0
                readings.append(
                    wire.encode(
                        Reading(
                            sensor=f"s{s:05d}.temp",
                            ts_ms=t0_ms + sec * 60_000,
                            q=Quality.OK,
                            temp_c=temp,
                        )
                    )
                )
            batches.append(
                wire_batch.assemble(
                    Stream.READINGS,
                    gateway="bench",
                    site="bench",
                    epoch=1,
                    seq=sec * 1000 + first // PER_MESSAGE + 1,
                    bodies=readings,
                )
            )
        out.append(batches)
    return out


def evaluators(sensors: int) -> dict[str, SensorEvaluator]:
    profile = load_profiles()["frozen-meat"]
    levels = {Level.WARNING: profile.warning, Level.CRITICAL: profile.critical}
    return {f"s{s:05d}.temp": SensorEvaluator(f"s{s:05d}.temp", levels) for s in range(sensors)}


def process(payload: bytes, evs: dict[str, SensorEvaluator]) -> int:
    batch = wire.decode(Stream.READINGS, payload)
    assert isinstance(batch, wire.ReadingsBatch)
    raised = 0
    for r in batch.readings:
        for breach in evs[r.sensor].feed(Point(r.ts_ms, r.temp_c)):
            if breach.raised_ts_ms == r.ts_ms and breach.end_ts_ms is None:
                raised += 1
    return raised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    # one simulated minute between a sensor's readings, so that 30-minute delays elapse
    # within the run; the wall-clock pace is still one reading per sensor per second
    t0 = 1_795_392_000_000
    payloads = make_payloads(args.sensors, args.seconds, t0)
    total = args.sensors * args.seconds

    evs = evaluators(args.sensors)
    started, cpu0 = time.perf_counter(), time.process_time()
    alarms = sum(process(p, evs) for second in payloads for p in second)
    elapsed = time.perf_counter() - started
    print(
        f"(a) sustained: {total / elapsed:,.0f} readings/s on one core "
        f"({total:,} readings, {alarms} alarms raised, "
        f"{time.process_time() - cpu0:.1f} s CPU)"
    )

    evs = evaluators(args.sensors)
    latencies: list[float] = []
    alarms = 0
    begin = time.perf_counter()
    cpu0 = time.process_time()
    per_second = len(payloads[0])
    for sec, batches in enumerate(payloads):
        for i, payload in enumerate(batches):
            due = begin + sec + i / per_second  # batches spread evenly over the second
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            raised = process(payload, evs)
            if raised:
                latencies += [(time.perf_counter() - due) * 1000] * raised
                alarms += raised
    wall = time.perf_counter() - begin
    cpu = time.process_time() - cpu0
    if not latencies:
        raise SystemExit("no alarm was raised: the scenario is broken")
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"(b) paced at {args.sensors:,} readings/s for {args.seconds} s: {alarms} alarms; "
        f"arrival -> alarm p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms "
        f"(target < 100 ms); CPU {100 * cpu / wall:.0f} % of one core"
    )


if __name__ == "__main__":
    main()
