"""Mean kinetic temperature (MKT).

    T_mkt = (ΔH/R) / -ln( Σ w_i · exp(-(ΔH/R) / T_i) / Σ w_i )      (T_i in kelvin)

with ΔH/R = 10,000 K by default (ΔH = 83.144 kJ/mol, R = 8.3144 J/(mol·K)) and weights
w_i the time each reading stands for. Reported in °C. Properties (tested): a constant
temperature gives itself; MKT is never below the time-weighted arithmetic mean; it is
pulled towards the hottest readings.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

KELVIN = 273.15
DEFAULT_DH_R_K = 10_000.0


class MktError(ValueError):
    """Input MKT cannot be computed from (no readings, no weight, bad row)."""


def mkt_c(
    temps_c: Sequence[float], weights: Sequence[float] | None = None, dh_r_k: float = DEFAULT_DH_R_K
) -> float:
    """MKT in °C of temperatures with weights (equal when omitted)."""
    if not temps_c:
        raise MktError("no readings")
    w = list(weights) if weights is not None else [1.0] * len(temps_c)
    if len(w) != len(temps_c):
        raise MktError("one weight per reading")
    if any(x < 0 for x in w) or sum(w) <= 0:
        raise MktError("weights must be non-negative and not all zero")
    # log-sum-exp for numerical safety: the terms are tiny (exp(-10000/255) ~ 1e-17)
    exponents = [-dh_r_k / (t + KELVIN) for t in temps_c]
    top = max(e for e, wi in zip(exponents, w, strict=True) if wi > 0)
    total = sum(wi * math.exp(e - top) for e, wi in zip(exponents, w, strict=True))
    mean_log = top + math.log(total / sum(w))
    return dh_r_k / -mean_log - KELVIN


def time_weights(ts_ms: Sequence[int], max_gap_ms: int | None = None) -> list[float]:
    """Weight of each reading: the time to the next one (capped at ``max_gap_ms``, so a
    gap counts for nothing more); the last reading takes the median interval."""
    if not ts_ms:
        return []
    steps = [b - a for a, b in itertools.pairwise(ts_ms)]
    if any(s < 0 for s in steps):
        raise MktError("timestamps must be in order")
    if max_gap_ms is not None:
        steps = [min(s, max_gap_ms) for s in steps]
    positive = sorted(s for s in steps if s > 0)
    last = positive[len(positive) // 2] if positive else 1
    return [float(s) for s in steps] + [float(last)]


def mkt_of_series(
    series: Iterable[tuple[int, float]],
    dh_r_k: float = DEFAULT_DH_R_K,
    max_gap_ms: int | None = None,
) -> float:
    """MKT in °C of (ts_ms, temp_c) pairs in time order, time-weighted."""
    pairs = list(series)
    ts = [t for t, _ in pairs]
    return mkt_c([v for _, v in pairs], time_weights(ts, max_gap_ms), dh_r_k)


def read_csv(path: Path, sensor: str | None = None) -> list[tuple[int, float]]:
    """Temperatures from a CSV: either columns ``timestamp`` (ISO 8601; naive is UTC)
    and ``temp_c``, or what ``coldchain export`` writes (``ts_ms``, ``sensor``,
    ``quantity``, ``value``: its temperature rows with a value, of one sensor)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        if {"ts_ms", "sensor", "quantity", "value"} <= columns:
            return _exported(path, reader, sensor)
        missing = {"timestamp", "temp_c"} - columns
        if missing:
            raise MktError(
                f"{path}: missing column(s) {sorted(missing)}; need timestamp, temp_c "
                "(or a file written by coldchain export)"
            )
        rows: list[tuple[int, float]] = []
        for number, row in enumerate(reader, start=2):
            try:
                when = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                rows.append((int(when.timestamp() * 1000), float(row["temp_c"])))
            except (ValueError, TypeError) as exc:
                raise MktError(f"{path}, line {number}: {exc}") from None
    rows.sort()
    return rows


def _exported(
    path: Path, reader: csv.DictReader[str], sensor: str | None
) -> list[tuple[int, float]]:
    by_sensor: dict[str, list[tuple[int, float]]] = {}
    for number, row in enumerate(reader, start=2):
        if row["quantity"] != "temp_c" or not row["value"]:
            continue  # other quantities, and fault readings (no value)
        if sensor is not None and row["sensor"] != sensor:
            continue
        try:
            point = (int(row["ts_ms"]), float(row["value"]))
        except (ValueError, TypeError) as exc:
            raise MktError(f"{path}, line {number}: {exc}") from None
        by_sensor.setdefault(row["sensor"], []).append(point)
    if len(by_sensor) > 1:
        raise MktError(
            f"{path} holds the temperatures of {len(by_sensor)} sensors "
            f"({', '.join(sorted(by_sensor))}): choose one with --sensor"
        )
    if not by_sensor:
        raise MktError(f"{path}: no temperature readings" + (f" of {sensor}" if sensor else ""))
    (rows,) = by_sensor.values()
    return sorted(rows)
