"""Temporal quality from optical flow (OpenCV Farneback, :mod:`flowstudio.bench.metrics.temporal`):
warp error and flicker of the output (both suites), and, for edits, how far the output's motion is from
the source's. The flows are computed once per case and shared by the three metrics."""

from __future__ import annotations

from typing import Any

from flowstudio.bench.metrics import temporal
from flowstudio.metrics.inputs import Inputs
from flowstudio.metrics.library._shared import source_flow
from flowstudio.metrics.registry import Skip, Value, metric

BOTH = ("edit", "avatar")
ONE_FRAME = "a single frame has no motion"
NO_FLOW = "no consistent flow between frames"


def _flow(x: Inputs) -> Any:
    return x.cached("flow", lambda: temporal.optical_flow(x["output"]))


def _stats(x: Inputs) -> dict[str, float | None]:
    def compute() -> dict[str, float | None]:
        output = x["output"]
        return temporal.warp_stats(output, _flow(x), temporal.optical_flow(output, backward=True))

    return x.cached("warp_stats", compute)


def _warp(x: Inputs, key: str) -> Value:
    if x["output"].shape[0] < 2:
        return Skip(ONE_FRAME)
    value = _stats(x)[key]
    return Skip(NO_FLOW) if value is None else float(value)


@metric(
    "warp_error",
    suites=BOTH,
    tier="offline",
    higher_is_better=False,
    unit="levels",
    version="1",
    description="flow-compensated mean |frame t - warped frame t+1| of the output (8-bit levels)",
    needs=("output",),
)
def warp_error(x: Inputs) -> Value:
    return _warp(x, "warp_error")


@metric(
    "flicker",
    suites=BOTH,
    tier="offline",
    higher_is_better=False,
    unit="levels",
    version="1",
    description="flow-compensated change of mean luma between consecutive output frames",
    needs=("output",),
)
def flicker(x: Inputs) -> Value:
    return _warp(x, "flicker")


@metric(
    "motion_epe",
    suites=("edit",),
    tier="offline",
    higher_is_better=False,
    unit="px",
    version="1",
    description="end-point error between the optical flow of the source and of the output",
    needs=("output", "source"),
)
def motion_epe(x: Inputs) -> Value:
    if x["output"].shape[0] < 2:
        return Skip(ONE_FRAME)
    value = temporal.motion_epe(source_flow(x), _flow(x))
    return Skip(ONE_FRAME) if value is None else float(value)
