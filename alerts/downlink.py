"""What the alert service tells each gateway: the limits of its compartments
(coldchain.wire_limits), retained on the gateway's ``limits`` topic, so that a truck's
gateway judges its own readings for the cab when it has no signal.

Built from what the judge is configured with (assignments in force, the locations'
profiles in force, calibrations), after every reload; a gateway's message is published
again only when it changed, and all of them after a reconnect. Only the lead publishes
(a standby holds the same, from the same store).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from alerts.calibration import in_force
from alerts.judge import Assigned
from coldchain import wire
from coldchain.judging.breach import SeriesSettings
from coldchain.judging.limits import scaled
from coldchain.wire import Stream
from coldchain.wire_limits import LIMITS_VERSION, Limits, SensorLimits, encode_limits

log = logging.getLogger("coldchain.alerts")


def limits_by_gateway(
    assigned: Assigned, settings: SeriesSettings, time_scale: float, now_ms: int
) -> dict[str, Limits]:
    """Per gateway the limits of each of its sensors that measures a place with a
    product profile (a gateway whose site is not known gets none: it has no topic)."""
    gateway_sites = assigned.gateway_sites
    sensors: dict[str, list[SensorLimits]] = {}
    for (gateway, sensor), location_id in sorted(assigned.sensors.items()):
        location = assigned.locations.get(location_id)
        profile = assigned.profiles.get((location.profile_id or "") if location else "")
        if location is None or profile is None or gateway not in gateway_sites:
            continue
        cals = assigned.calibrations.get((gateway, sensor), [])
        sensors.setdefault(gateway, []).append(
            SensorLimits(
                sensor=sensor,
                location=location.name,
                location_zh=location.name_zh or "",
                profile=profile.id,
                warning=scaled(profile.warning, time_scale).model_dump(exclude_none=True),
                critical=scaled(profile.critical, time_scale).model_dump(exclude_none=True),
                correction_c=in_force(cals, now_ms).correction_c,
                door_max_min=location.door_open_max_min / time_scale,
            )
        )
    return {
        gateway: Limits(
            v=LIMITS_VERSION,
            gateway=gateway,
            site=gateway_sites[gateway],
            ts_ms=now_ms,
            sensors=found,
            max_gap_ms=settings.max_gap_ms,
            fault_ms=settings.fault_ms,
        )
        for gateway, found in sensors.items()
    }


Publish = Callable[[str, bytes], object]


@dataclass
class Downlink:
    """Publishes each gateway's limits when they change (retained)."""

    publish: Publish
    #: gateway: the message last published (without its time)
    sent: dict[str, bytes] = field(default_factory=dict)
    #: something changed (a reload): compare and send what differs
    due: bool = False
    #: (re)connected: send every message again (a broker may have lost retained ones)
    everything: bool = False

    def send(self, assigned: Assigned, settings: SeriesSettings, time_scale: float) -> int:
        """Publish the limits that changed (all of them after a reconnect); a failure
        leaves it due (the service's next tick tries again)."""
        if self.everything:
            self.everything = False
            self.sent.clear()
        now = time.time_ns() // 1_000_000
        count = self.update(limits_by_gateway(assigned, settings, time_scale, now))
        self.due = False
        return count

    def update(self, messages: dict[str, Limits]) -> int:
        """Publish what changed; returns how many messages went out."""
        count = 0
        for gateway, limits in messages.items():
            same = encode_limits(msgspec.structs.replace(limits, ts_ms=0))
            if self.sent.get(gateway) == same:
                continue
            topic = wire.topic(limits.site, gateway, Stream.LIMITS)
            self.publish(topic, encode_limits(limits))
            self.sent[gateway] = same
            count += 1
        if count:
            log.info("limits sent down to %d gateway(s)", count)
        return count
