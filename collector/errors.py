"""Errors of the collector.

- :class:`Rejected`: a message that breaks the wire contract or is not plausible; it is
  quarantined with :attr:`reason`, never stored as readings.
- :class:`StoreUnavailable`: the store cannot take a write now (server down, file
  locked, disk full). The batch is retried and nothing is acknowledged meanwhile.
  Library errors (sqlite3, influxdb-client, urllib3) are translated into it at the store.
- :class:`StoreRefused`: the store refuses this write for good (an InfluxDB 4xx, an
  SQLite error that is not "not now"). The collector writes the messages one at a time
  and quarantines the ones refused, with the store's message as the reason.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of every error this package raises on purpose."""


class Rejected(CollectorError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class StoreUnavailable(CollectorError):
    """The store cannot take this write now; try again later (after ``retry_after_s``
    when the store said so, an HTTP 429's Retry-After)."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(reason)


class StoreRefused(CollectorError):
    """The store refuses this write and always will: retrying it cannot succeed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
