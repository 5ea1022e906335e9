"""The short fuzz run (the long one: bench/fuzz_consumers.py): generated payloads through
a real broker to a collector and an alert service running together, with control
readings and control excursions interleaved."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import fuzz
from tests.harness import Broker

pytestmark = pytest.mark.e2e


def test_fuzzed_payloads_stop_neither_worker_and_every_control_reading_and_excursion_lands(
    tmp_path: Path, running_broker: Broker
) -> None:
    found = fuzz.run(tmp_path, running_broker.port, messages=3000, excursions=3, seed=12)
    assert found.collector_alive and found.alerts_alive
    assert found.stored_control == found.control_readings  # each once (primary key)
    assert found.control_alarms == found.control_excursions == 3
    assert found.quarantined > 1000  # most mutations break the contract
    assert found.quarantine_without_reason == 0
    assert found.refused_not_kept == 0 and found.kept_not_refused == 0
