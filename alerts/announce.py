"""The one line an alarm is announced with (the service's log, the demo's console)."""

from __future__ import annotations

import json

from alerts.models import BreachRow
from alerts.wording import DEFAULT_TZ, local_time, rounded
from coldchain.judging.breach import Breach, Kind


def alarm_line(
    location: str | None,
    gateway: str,
    breach: Breach,
    row: BreachRow,
    alarm_id: int,
    tz: str = DEFAULT_TZ,
) -> str:
    """For the operator reading a log or the demo's console: the time in the site's
    zone with its date and offset (a backlog's breach may be days old)."""
    name = location if location is not None else f"gateway {gateway}"
    since = local_time(breach.start_ts_ms, tz)
    unit = "%" if breach.kind in (Kind.RH_HIGH, Kind.RH_LOW) else " °C"
    values = ""
    if (
        breach.kind in (Kind.HIGH, Kind.CUMULATIVE_HIGH, Kind.RH_HIGH)
        and breach.max_value is not None
    ):
        values = f" max {rounded(breach.max_value)}{unit}"
    elif breach.min_value is not None:
        values = f" min {rounded(breach.min_value)}{unit}"
    if breach.kind is Kind.GATEWAY_CLOCK:  # "gateway X's clock is N min off"
        values = f" clock {breach.settings.get('off_min')} min {breach.settings.get('way')}"
    where = f"{gateway}/{breach.sensor}" if breach.sensor else gateway
    batches = ", ".join(json.loads(row.batches)) or "none"
    return (
        f"ALARM {breach.level.value} {breach.kind.value}: {name} ({where}) since "
        f"{since}{values}; batches {batches} [alarm {alarm_id}]"
    )
