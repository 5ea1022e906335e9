"""Errors of the collector.

- :class:`Rejected`: a message that breaks the wire contract or is not plausible; it is
  quarantined with :attr:`reason`, never stored as readings.
- :class:`StoreUnavailable`: the store cannot take a write now (server down, file
  locked, disk full). The batch is retried and nothing is acknowledged meanwhile.
  Library errors (sqlite3, influxdb-client, urllib3) are translated into it at the store.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of every error this package raises on purpose."""


class Rejected(CollectorError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class StoreUnavailable(CollectorError):
    """The store cannot take this write now; try again later."""
