"""Operations on the alert service's store, one module per aggregate. Each takes a
Session: the caller owns the transaction (``alerts.db.transaction``), so a breach and
its alarm, or a change and its audit row, commit together or not at all."""

from alerts.repo.alarms import acknowledge_alarm, alarm_of, assign_alarm, store_alarm, sync_alarm
from alerts.repo.breaches import (
    GATEWAY_WIDE,
    breach_of,
    open_breach,
    open_breaches,
    stored_breaches,
    supersede_breach,
    upsert_breach,
)
from alerts.repo.custody import (
    NewBatch,
    batches_in,
    create_batch,
    handover,
    journey,
    split_batch,
)
from alerts.repo.sites import (
    add_site,
    assign_sensor,
    gateway_locations,
    load_profile,
    location_of,
    profiles_in_force,
    save_profile,
)

__all__ = [
    "GATEWAY_WIDE",
    "NewBatch",
    "acknowledge_alarm",
    "add_site",
    "alarm_of",
    "assign_alarm",
    "assign_sensor",
    "batches_in",
    "breach_of",
    "create_batch",
    "gateway_locations",
    "handover",
    "journey",
    "load_profile",
    "location_of",
    "open_breach",
    "open_breaches",
    "profiles_in_force",
    "save_profile",
    "split_batch",
    "store_alarm",
    "stored_breaches",
    "supersede_breach",
    "sync_alarm",
    "upsert_breach",
]
