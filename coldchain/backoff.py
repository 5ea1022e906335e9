"""Per-device backoff after a device stops answering (tenacity's jittered exponential)."""

from __future__ import annotations

import time

from tenacity import RetryCallState, wait_exponential_jitter


class Backoff:
    """When to ask an unreachable device again: doubling from ``min_s`` up to ``max_s``.

    A device that does not answer costs a full timeout on its bus; on an RS-485 line that
    time is taken from every other device, so a dead device is asked less and less often.
    """

    def __init__(self, min_s: float, max_s: float) -> None:
        self._wait = wait_exponential_jitter(multiplier=min_s, max=max_s, jitter=min_s / 2)
        self.failures = 0
        self.retry_at = 0.0

    def failed(self, now: float | None = None) -> float:
        """Record a failure; returns the delay before the next attempt."""
        self.failures += 1
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = self.failures
        delay = float(self._wait(state))
        self.retry_at = (time.monotonic() if now is None else now) + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.retry_at = 0.0

    def waiting(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self.retry_at
