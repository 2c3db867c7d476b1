"""Reference-tier editing metrics on local, SHA-256-verified weights (definitions and citations in
:mod:`flowstudio.bench.metrics.reference`): CLIP text alignment and frame consistency, DINO structure
distance, LPIPS of the kept region."""

from __future__ import annotations

from flowstudio.metrics.inputs import Inputs
from flowstudio.metrics.registry import Skip, Value, metric

EDIT = ("edit",)


def _clip(x: Inputs) -> tuple[float, float | None]:
    return x.cached("clip", lambda: x.reference.clip_similarities(x["output"], x["prompt"]))


@metric(
    "clip_text",
    suites=EDIT,
    tier="reference",
    higher_is_better=True,
    unit="cos",
    version="1",
    description="CLIP cosine of output frames and target prompt",
    needs=("output", "prompt"),
    weights="clip",
)
def clip_text(x: Inputs) -> Value:
    return _clip(x)[0]


@metric(
    "clip_frame",
    suites=EDIT,
    tier="reference",
    higher_is_better=True,
    unit="cos",
    version="1",
    description="CLIP cosine of consecutive output frames",
    needs=("output", "prompt"),
    weights="clip",
)
def clip_frame(x: Inputs) -> Value:
    value = _clip(x)[1]
    return Skip("a single frame has no consecutive pair") if value is None else value


@metric(
    "dino_structure",
    suites=EDIT,
    tier="reference",
    higher_is_better=False,
    unit="",
    version="1",
    description="DINO self-similarity structure distance, source vs output",
    needs=("output", "source"),
    weights="dino",
)
def dino_structure(x: Inputs) -> Value:
    return x.reference.dino_structure(x["source"], x["output"])


@metric(
    "lpips_bg",
    suites=EDIT,
    tier="reference",
    higher_is_better=False,
    unit="",
    version="1",
    description="LPIPS(AlexNet) to the source, kept region only (whole frame when the case has none)",
    needs=("output", "source"),
    weights="lpips",
)
def lpips_bg(x: Inputs) -> Value:
    return x.reference.lpips(x["source"], x["output"], x.get("kept_region"))
