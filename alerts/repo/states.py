"""Each sensor's evaluation state, saved by an alert service that has no readings store
to replay after a restart (docs/design-alerts.md, "Restarts")."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from alerts.models import EvaluatorState


def save_states(
    s: Session, found: Sequence[tuple[str, str, str, dict[str, Any]]], now_ms: int
) -> None:
    """(gateway, sensor, signature of its limits, state) each, replacing what was saved."""
    for gateway, sensor, signature, state in found:
        row = s.get(EvaluatorState, (gateway, sensor))
        if row is None:
            row = EvaluatorState(gateway=gateway, sensor=sensor)
            s.add(row)
        row.signature, row.state, row.saved_ms = signature, json.dumps(state), now_ms


def saved_state(s: Session, gateway: str, sensor: str) -> tuple[str, dict[str, Any]] | None:
    row = s.get(EvaluatorState, (gateway, sensor))
    return None if row is None else (row.signature, json.loads(row.state))
