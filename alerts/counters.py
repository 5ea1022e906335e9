"""The alert service's counters (its metrics, alerts/service.py): what the judge counts
and what the service adds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class JudgeCounters:
    readings: int = 0
    late_reevaluations: int = 0


@dataclass
class AlertCounters(JudgeCounters):
    breaches_changed: int = 0
    alarms_raised: int = 0
    superseded: int = 0
    statuses: int = 0
    #: messages the one way in refused (the collector quarantines its copy)
    refused: int = 0
    #: messages whose judging failed, kept aside; old ones dropped to keep it bounded
    quarantined: int = 0
    quarantine_dropped: int = 0
    database_retries: int = 0
    job_failures: int = 0
    notifications_sent: int = 0
    #: outcomes judged in standby and left to the lead's holder
    standby_outcomes: int = 0
    notifications_failed: int = 0
