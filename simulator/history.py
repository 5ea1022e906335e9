"""Hours of past readings for the simulated county, so that a demo has batches with a
history to audit from its first minute: the thermal model run forward over the hours
before now (thermostat cycles, defrosts), written to the store as the collector would
have written it. The live gateways' messages carry their own epochs; these carry epoch 1.
"""

from __future__ import annotations

import copy

from coldchain import wire
from coldchain.wire import Quality, Reading, ReadingsBatch
from collector.store import Incoming, Store
from simulator.seed import sensors_of
from simulator.thermal import Space

MIN_MS = 60_000


def _reading(sensor: str, ts_ms: int, space: Space) -> Reading:
    channel = sensor.rsplit(".", 1)[1]
    if channel == "rh":
        return Reading(sensor=sensor, ts_ms=ts_ms, q=Quality.OK, rh_pct=round(space.rh_pct, 1))
    if channel == "door":
        return Reading(sensor=sensor, ts_ms=ts_ms, q=Quality.OK, door_open=space.door_open)
    offset = 0.4 if sensor.endswith("-probe.temp") else 0.0  # a core probe lags warm
    return Reading(sensor=sensor, ts_ms=ts_ms, q=Quality.OK, temp_c=round(space.temp_c + offset, 2))


def write_history(
    store: Store, spaces: dict[str, Space], *, end_ms: int, hours: float, step_min: float = 5.0
) -> int:
    """Readings every ``step_min`` for every assigned sensor over ``hours`` before
    ``end_ms``; returns how many were written. ``spaces`` are not changed."""
    model = {name: copy.deepcopy(space) for name, space in spaces.items()}
    located = sensors_of()
    steps = int(hours * 60 / step_min)
    start_ms = end_ms - steps * int(step_min * MIN_MS)
    per_gateway: dict[tuple[str, str], list[Reading]] = {}
    for i in range(steps):
        ts_ms = start_ms + i * int(step_min * MIN_MS)
        for location, (site, sensors) in located.items():
            space = model.get(location)
            if space is None:
                continue
            space.step(step_min)
            for gateway, sensor in sensors:
                per_gateway.setdefault((gateway, site), []).append(_reading(sensor, ts_ms, space))
    written = 0
    for (gateway, site), readings in sorted(per_gateway.items()):
        for seq, chunk_start in enumerate(range(0, len(readings), 1000), start=1):
            chunk = readings[chunk_start : chunk_start + 1000]
            batch = ReadingsBatch(
                v=wire.SCHEMA_VERSION,
                gateway=gateway,
                site=site,
                epoch=1,
                seq=seq,
                readings=chunk,
            )
            result = store.write([Incoming(batch, end_ms)], [])
            written += result.readings_stored
    return written
