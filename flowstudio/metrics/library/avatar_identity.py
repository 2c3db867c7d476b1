"""Identity drift of a talking head (offline, TalkingShapes framing; definitions in
:mod:`flowstudio.avatar.evaluation.metrics`): the colour-signature distance of the reference image to the
frames
at 10 s and 30 s, the ground truth's own variation at the same times and its 95th percentile, and the
ratio of the generated drift to that variation."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowstudio.avatar.evaluation.metrics import identity_drift, identity_variation
from flowstudio.metrics.inputs import Inputs
from flowstudio.metrics.registry import Skip, Value, metric

AVATAR = ("avatar",)
TIMES = (10.0, 30.0)
GENERATED = ("output", "reference_image", "fps")


def _window(x: Inputs) -> float:
    return float(x.option("identity_window", 0.2))


def _drift(x: Inputs) -> dict[float, tuple[float, float]]:
    def compute() -> dict[float, tuple[float, float]]:
        frames, fps = x["output"], x["fps"]
        drift = identity_drift(x["reference_image"], frames, fps, TIMES, _window(x))
        x.detail("identity_times_used", {f"{int(t)}s": round(drift[t][1], 3) for t in TIMES})
        if any(drift[t][1] < t for t in TIMES):
            x.detail(
                "identity_note",
                f"the clip is {len(frames) / fps:.2f} s long: drift at the times past its end uses its last "
                f"{_window(x):g} s",
            )
        return drift

    return x.cached("identity_drift", compute)


def _world(x: Inputs) -> dict[float, tuple[float, float]]:
    truth = x["truth"]
    return x.cached("identity_world", lambda: identity_drift(truth[0], truth, x["fps"], TIMES, _window(x)))


def _p95(x: Inputs) -> Any:
    return x.cached(
        "identity_p95",
        lambda: float(np.percentile(identity_variation(x["truth"][: len(x["output"])]), 95)),
    )


@metric(
    "identity_drift_10s",
    suites=AVATAR,
    tier="offline",
    higher_is_better=False,
    unit="dE",
    version="1",
    description="colour-signature EMD, reference image vs frames at 10 s (or the last frames)",
    needs=GENERATED,
)
def identity_drift_10s(x: Inputs) -> Value:
    return _drift(x)[10.0][0]


@metric(
    "identity_drift_30s",
    suites=AVATAR,
    tier="offline",
    higher_is_better=False,
    unit="dE",
    version="1",
    description="colour-signature EMD, reference image vs frames at 30 s (or the last frames)",
    needs=GENERATED,
)
def identity_drift_30s(x: Inputs) -> Value:
    return _drift(x)[30.0][0]


@metric(
    "identity_world_10s",
    suites=AVATAR,
    tier="offline",
    higher_is_better=None,
    unit="dE",
    version="1",
    description="the same distance on the ground truth (its frame 0 vs its frames at the same time)",
    needs=("truth", "fps"),
)
def identity_world_10s(x: Inputs) -> Value:
    return _world(x)[10.0][0]


@metric(
    "identity_world_30s",
    suites=AVATAR,
    tier="offline",
    higher_is_better=None,
    unit="dE",
    version="1",
    description="the same distance on the ground truth at the 30 s time",
    needs=("truth", "fps"),
)
def identity_world_30s(x: Inputs) -> Value:
    return _world(x)[30.0][0]


@metric(
    "identity_world_p95",
    suites=AVATAR,
    tier="offline",
    higher_is_better=None,
    unit="dE",
    version="1",
    description="95th percentile over ground-truth frames of the distance to its frame 0",
    needs=("output", "truth"),
)
def identity_world_p95(x: Inputs) -> Value:
    return _p95(x)


@metric(
    "identity_ratio_30s",
    suites=AVATAR,
    tier="offline",
    higher_is_better=False,
    unit="x",
    version="1",
    description="identity_drift_30s / identity_world_p95 (<= 1: within the world's own variation)",
    needs=(*GENERATED, "truth"),
)
def identity_ratio_30s(x: Inputs) -> Value:
    p95 = _p95(x)
    if p95 <= 1e-6:
        return Skip("the ground truth does not vary at all (p95 distance 0): no ratio")
    return _drift(x)[30.0][0] / p95
