"""The long fuzz run (issue 12): 100,000 generated payloads (mutations of the golden
payloads and adversarial values) through a real Mosquitto to a collector and an alert
service running together, with control readings and excursions interleaved. Prints what
it found; exits 1 if a control reading or excursion was lost, a worker stopped, or the
quarantine and the one way in disagree.

    .venv/bin/python bench/fuzz_consumers.py [--messages 100000] [--excursions 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.broker import LocalBroker
from tests import fuzz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--excursions", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalBroker(Path(tmp) / "mosquitto")
        broker.start()
        try:
            found = fuzz.run(
                Path(tmp),
                broker.port,
                messages=args.messages,
                excursions=args.excursions,
                seed=args.seed,
            )
        finally:
            broker.stop()
    for key, value in asdict(found).items():
        print(f"{key:28} {value}")
    print(f"{'fuzzed messages/s':28} {found.sent / found.seconds:,.0f}")
    ok = (
        found.collector_alive
        and found.alerts_alive
        and found.stored_control == found.control_readings
        and found.control_alarms == found.control_excursions
        and found.quarantine_without_reason == 0
        and found.refused_not_kept == 0
        and found.kept_not_refused == 0
    )
    print(
        "verdict",
        "every control reading and excursion landed; no worker stopped" if ok else "FAILED",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
