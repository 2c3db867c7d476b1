"""Leaderboard numbers from a results file's case records: mean, spread and count per scope and metric.

Scopes are ``all`` and each edit type. ``composite`` is aggregated like a metric, from each case's
composite (:func:`flowstudio.bench.composite.composite_score`, recorded by the runner). Spread is the
population standard deviation over cases (as the results summary reports it); the board also shows
``ci95``, the normal-approximation half-width ``1.96 std / sqrt(n)`` of the mean, so that two rows
can be told apart or not at a glance. Cases that errored contribute nothing (they are counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

ALL = "all"
COMPOSITE = "composite"


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    n: int

    @property
    def ci95(self) -> float:
        return 1.96 * self.std / math.sqrt(self.n) if self.n > 0 else math.nan


def case_composite(record: dict[str, Any]) -> float | None:
    value = record.get("composite")
    if isinstance(value, dict):
        value = value.get("value")
    return None if value is None else float(value)


def aggregate(records: list[dict[str, Any]]) -> dict[str, dict[str, Stat]]:
    """``{scope: {metric: Stat}}`` over the ok records (scope ``all`` and each record's edit type)."""
    values: dict[str, dict[str, list[float]]] = {}
    for record in records:
        if record.get("status", "ok") != "ok":
            continue
        numbers = {k: float(v) for k, v in record.get("metrics", {}).items() if _finite(v)}
        composite = case_composite(record)
        if composite is not None:
            numbers[COMPOSITE] = composite
        for scope in (ALL, str(record.get("edit_type"))):
            bucket = values.setdefault(scope, {})
            for name, value in numbers.items():
                bucket.setdefault(name, []).append(value)
    return {
        scope: {
            name: Stat(float(np.mean(v)), float(np.std(v)), len(v)) for name, v in sorted(metrics.items())
        }
        for scope, metrics in values.items()
    }


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
