"""Score a case, then a set, with every registered metric of a suite whose inputs and weights are there.

No metric is named here: a metric runs when the case has all of its ``needs`` and, for the reference
tier, when verified weights are there and a scorer exists; otherwise it is reported skipped with the
first reason that applies (reference tier not requested, weights missing, scorer not implemented, an
input absent). A compute function may itself return :class:`~flowstudio.metrics.registry.Skip` (an
empty region, too few speech frames): a metric never reports a made-up number.
"""

from __future__ import annotations

import math
from typing import Any

from flowstudio.metrics.inputs import Inputs
from flowstudio.metrics.registry import Measured, Metric, Skip, Value, for_suite

NOT_REQUESTED = "reference tier not requested (--reference)"


def unavailable(metric: Metric, reference: Any | None) -> str | None:
    """Why ``metric`` cannot run whatever the case (no reference models, weights, scorer), or ``None``."""
    if metric.tier == "reference" or metric.weights:
        if reference is None:
            return NOT_REQUESTED
        enabled = getattr(reference, "enabled", None)
        if enabled is not None and metric.name not in enabled:
            return f"{metric.name} not enabled"
        status = reference.status(metric.weights)
        if status.status != "ok":
            return f"needs {metric.weights} weights (not available locally): {status.reason}"
        if metric.compute is None:
            return (
                f"{metric.weights} weights verified at {status.path}, but the {metric.name} scorer is not "
                "implemented in this version of flowstudio"
            )
    elif metric.compute is None:
        return f"the {metric.name} scorer is not implemented in this version of flowstudio"
    return None


def missing_input(metric: Metric, inputs: Inputs) -> str | None:
    """The reason for the first of ``metric.needs`` the case lacks, or ``None``."""
    for name in metric.needs:
        if not inputs.has(name):
            return inputs.why_missing(name)
    return None


def _check(metric: Metric, value: Any) -> Value:
    """A compute function must return a finite number, a Measured or a Skip (None is refused)."""
    number = value.value if isinstance(value, Measured) else value
    if isinstance(value, Skip):
        return value
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise TypeError(
            f"metric {metric.name}: compute returned {value!r}; return a number, Measured or Skip(reason)"
        )
    if not math.isfinite(number):
        return Skip(f"{metric.name} is not finite ({number})")
    return value


def score_case(suite: str, inputs: Inputs, *, tier: str | None = None) -> dict[str, Any]:
    """Every case-level metric of ``suite`` (optionally of one ``tier``) on one case.

    Returns:
        ``{"metrics": {name: number}, "skipped": {name: reason}, "details": {...}}`` (a Measured
        value's extra fields go to ``details[name]``).
    """
    metrics: dict[str, float | int] = {}
    skipped: dict[str, str] = {}
    for metric in for_suite(suite, level="case", tier=tier):
        reason = unavailable(metric, inputs.reference) or missing_input(metric, inputs)
        if reason is not None:
            skipped[metric.name] = reason
            continue
        assert metric.compute is not None
        value = _check(metric, metric.compute(inputs))
        if isinstance(value, Skip):
            skipped[metric.name] = value.reason
        elif isinstance(value, Measured):
            metrics[metric.name] = value.value
            inputs.detail(metric.name, value.extra)
        else:
            metrics[metric.name] = value
    return {"metrics": metrics, "skipped": skipped, "details": inputs.details}


class SetScorer:
    """Set-level metrics of a suite: :meth:`add` each case, then :meth:`finish`.

    Args:
        suite: ``edit`` or ``avatar``.
        reference: the reference-tier model provider, or ``None`` (reference metrics skipped).
    """

    def __init__(self, suite: str, reference: Any | None = None) -> None:
        self.metrics = for_suite(suite, level="set")
        self.reference = reference
        self.blocked = {m.name: unavailable(m, reference) for m in self.metrics}
        self.parts: dict[str, list[Any]] = {m.name: [] for m in self.metrics}
        self.lacking: dict[str, list[str]] = {m.name: [] for m in self.metrics}
        self.cases = 0

    def add(self, inputs: Inputs) -> None:
        """Collect one case's part of every set metric that can run on it."""
        self.cases += 1
        for metric in self.metrics:
            if self.blocked[metric.name] is not None:
                continue
            reason = missing_input(metric, inputs)
            if reason is not None:
                self.lacking[metric.name].append(reason)
            else:
                assert metric.collect is not None
                self.parts[metric.name].append(metric.collect(inputs))

    def finish(self) -> dict[str, dict[str, Any]]:
        """``{name: {"value": number, ...extra} | {"status": "skipped", "reason"}}``."""
        out: dict[str, dict[str, Any]] = {}
        for metric in self.metrics:
            reason = self.blocked[metric.name]
            lacking = self.lacking[metric.name]
            if reason is None and not self.cases:
                reason = "no case"
            if reason is None and lacking:
                reason = (
                    lacking[0]
                    if len(lacking) == self.cases
                    else (f"{len(lacking)} of {self.cases} cases lack an input: {lacking[0]}")
                )
            if reason is not None:
                out[metric.name] = Skip(reason).record()
                continue
            assert metric.compute is not None
            value = _check(metric, metric.compute(self.parts[metric.name]))
            if isinstance(value, Skip):
                out[metric.name] = value.record()
            elif isinstance(value, Measured):
                out[metric.name] = {"value": value.value, **value.extra}
            else:
                out[metric.name] = {"value": value}
        return out
