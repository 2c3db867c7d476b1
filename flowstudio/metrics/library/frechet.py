"""Set-level Fréchet distances on reference-tier feature extractors, for both suites: FVD (I3D clip
features) and FID (Inception-v3 pool features of every frame), outputs against the real clips (the
ground truth; for edits without one, the source). Each case contributes its features, not its frames."""

from __future__ import annotations

from typing import Any

import numpy as np

from flowstudio.bench.metrics.reference import feature_stats, frechet_distance
from flowstudio.metrics.inputs import Inputs
from flowstudio.metrics.registry import Measured, Metric, Skip, Value, register

BOTH = ("edit", "avatar")


def _distance(name: str, parts: list[tuple[np.ndarray, np.ndarray]]) -> Value:
    a = np.concatenate([np.atleast_2d(p[0]) for p in parts])
    b = np.concatenate([np.atleast_2d(p[1]) for p in parts])
    if min(len(a), len(b)) < 2:
        return Skip(f"{name} needs at least 2 samples on each side, got {len(a)} and {len(b)}")
    return Measured(frechet_distance(*feature_stats(a), *feature_stats(b)), {"n": len(parts)})


def _collect_video(x: Inputs) -> Any:
    return x.reference.video_features(x["output"]), x.reference.video_features(x["real"])


def _collect_frames(x: Inputs) -> Any:
    return x.reference.image_features(x["output"]), x.reference.image_features(x["real"])


register(
    Metric(
        "fvd",
        BOTH,
        "reference",
        False,
        "",
        "1",
        "Frechet distance of I3D features, outputs vs real clips",
        needs=("output", "real"),
        weights="i3d",
        level="set",
        collect=_collect_video,
        compute=lambda parts: _distance("fvd", parts),
    )
)
register(
    Metric(
        "fid",
        BOTH,
        "reference",
        False,
        "",
        "1",
        "Frechet distance of Inception-v3 pool features, output vs real frames",
        needs=("output", "real"),
        weights="inception",
        level="set",
        collect=_collect_frames,
        compute=lambda parts: _distance("fid", parts),
    )
)
