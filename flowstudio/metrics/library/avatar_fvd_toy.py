"""Set-level Fréchet distance of the toy video feature extractor's 16-frame window features, generated
vs ground truth (offline: the extractor is trained by ``flowstudio avatar train-features``)."""

from __future__ import annotations

from typing import Any

from flowstudio.metrics.inputs import Inputs
from flowstudio.metrics.registry import Measured, Metric, Skip, Value, register


def _collect(x: Inputs) -> Any:
    extractor = x["toy_features"]
    return extractor, extractor.clip_features(x["output"]), extractor.clip_features(x["truth"])


def _compute(parts: list[Any]) -> Value:
    from flowstudio.avatar.evaluation.features import frechet_video_distance

    extractor = parts[0][0]
    generated, real = [p[1] for p in parts], [p[2] for p in parts]
    windows = (sum(len(g) for g in generated), sum(len(r) for r in real))
    if min(windows) < 2:
        return Skip(
            f"fewer than 2 windows of {extractor.window} frames per set (generated {windows[0]}, "
            f"truth {windows[1]}): clips too short or too few"
        )
    return Measured(
        frechet_video_distance(generated, real),
        {
            "windows": windows[0],
            "truth_windows": windows[1],
            "extractor": str(extractor.path) if extractor.path else None,
        },
    )


register(
    Metric(
        "fvd_toy",
        ("avatar",),
        "offline",
        False,
        "",
        "1",
        "Frechet distance of the toy feature extractor's 16-frame window features, generated vs truth",
        needs=("output", "truth", "toy_features"),
        level="set",
        collect=_collect,
        compute=_compute,
    )
)
