"""The one line an alarm is announced with (the service's log, the demo's console)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from alerts.breach import Breach, Kind
from alerts.models import BreachRow


def alarm_line(
    location: str | None, gateway: str, breach: Breach, row: BreachRow, alarm_id: int
) -> str:
    name = location if location is not None else f"gateway {gateway}"
    since = datetime.fromtimestamp(breach.start_ts_ms / 1000, UTC).strftime("%H:%M:%S")
    unit = "%" if breach.kind in (Kind.RH_HIGH, Kind.RH_LOW) else " °C"
    values = ""
    if (
        breach.kind in (Kind.HIGH, Kind.CUMULATIVE_HIGH, Kind.RH_HIGH)
        and breach.max_value is not None
    ):
        values = f" max {breach.max_value:.1f}{unit}"
    elif breach.min_value is not None:
        values = f" min {breach.min_value:.1f}{unit}"
    if breach.kind is Kind.GATEWAY_CLOCK:  # "gateway X's clock is N min off"
        values = f" clock {breach.settings.get('off_min')} min {breach.settings.get('way')}"
    where = f"{gateway}/{breach.sensor}" if breach.sensor else gateway
    batches = ", ".join(json.loads(row.batches)) or "none"
    return (
        f"ALARM {breach.level.value} {breach.kind.value}: {name} ({where}) since "
        f"{since}Z{values}; batches {batches} [alarm {alarm_id}]"
    )
