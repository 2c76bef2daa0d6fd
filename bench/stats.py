"""Percentiles without numpy (the driver must not depend on the server's extras), and the median of
repeated trials (one window on a shared machine is at the mercy of its neighbours)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))], 3)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 3), "n": n}


def median_trial(
    trials: Sequence[dict[str, Any]], key: Callable[[dict[str, Any]], float], label: str
) -> dict[str, Any]:
    """The trial whose ``key`` is the median (the lower middle for an even count), carrying every
    trial's value of ``key`` under ``label`` in run order so the spread is reported too."""
    ordered = sorted(trials, key=key)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen[label] = [key(t) for t in trials]
    return chosen
