"""Mean kinetic temperature (MKT).

    T_mkt = (ΔH/R) / -ln( Σ w_i · exp(-(ΔH/R) / T_i) / Σ w_i )      (T_i in kelvin)

with ΔH/R = 10,000 K by default (ΔH = 83.144 kJ/mol, R = 8.3144 J/(mol·K)) and weights
w_i the time each reading stands for: until the next reading, the last one for the
interval before it, each capped so that a gap is counted only up to the cap and reported
(:func:`mkt_report`). Reported in °C, beside the time-weighted arithmetic mean.
Properties (tested): a constant temperature gives itself; MKT is never below the
time-weighted arithmetic mean; it is pulled towards the hottest readings.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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


#: with no cap given, a reading stands for at most this many of the series' typical
#: (median) interval: a longer gap is capped and reported, never bridged
GAP_INTERVALS = 3


def time_weights(ts_ms: Sequence[int], max_gap_ms: int | None = None) -> list[float]:
    """Weight of each reading: the time until the next one; the last reading's, the
    interval before it (the time it stands for is unknown; its predecessor's is the best
    evidence). Each is capped at ``max_gap_ms``: a gap counts for nothing more."""
    if not ts_ms:
        return []
    steps = [b - a for a, b in itertools.pairwise(ts_ms)]
    if any(s < 0 for s in steps):
        raise MktError("timestamps must be in order")
    steps.append(steps[-1] if steps else 1)
    if max_gap_ms is not None:
        steps = [min(s, max_gap_ms) for s in steps]
    return [float(s) for s in steps]


@dataclass(frozen=True, slots=True)
class MktResult:
    mkt_c: float
    #: the time-weighted arithmetic mean, with the same weights
    mean_c: float
    readings: int
    #: a reading stands for at most this long
    cap_ms: int
    #: the gaps (from, to) longer than the cap, each counted only for the cap
    capped_gaps: tuple[tuple[int, int], ...]


def typical_cap_ms(ts_ms: Sequence[int]) -> int:
    """GAP_INTERVALS times the median interval (at least a minute)."""
    steps = sorted(b - a for a, b in itertools.pairwise(ts_ms) if b > a)
    median = steps[len(steps) // 2] if steps else 60_000
    return max(60_000, GAP_INTERVALS * median)


def mkt_report(
    series: Iterable[tuple[int, float]],
    dh_r_k: float = DEFAULT_DH_R_K,
    max_gap_ms: int | None = None,
) -> MktResult:
    """MKT and the time-weighted mean of (ts_ms, temp_c) pairs in time order, with the
    gaps it capped (``max_gap_ms``; by default GAP_INTERVALS typical intervals)."""
    pairs = list(series)
    ts = [t for t, _ in pairs]
    temps = [v for _, v in pairs]
    cap = typical_cap_ms(ts) if max_gap_ms is None else max_gap_ms
    weights = time_weights(ts, cap)
    if not pairs or sum(weights) <= 0:
        raise MktError("no readings")
    gaps = tuple((a, b) for a, b in itertools.pairwise(ts) if b - a > cap)
    mean = sum(w * t for w, t in zip(weights, temps, strict=True)) / sum(weights)
    return MktResult(mkt_c(temps, weights, dh_r_k), mean, len(pairs), cap, gaps)


def mkt_of_series(
    series: Iterable[tuple[int, float]],
    dh_r_k: float = DEFAULT_DH_R_K,
    max_gap_ms: int | None = None,
) -> float:
    """MKT in °C of (ts_ms, temp_c) pairs in time order, time-weighted."""
    return mkt_report(series, dh_r_k, max_gap_ms).mkt_c


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
