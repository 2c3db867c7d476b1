"""Closeness of an edit to its ground-truth target (toy worlds render it exactly): PSNR and SSIM over
the frame, inside the edit region and (SSIM) outside it, and CIEDE2000 colour fidelity in the region."""

from __future__ import annotations

from typing import Any

from flowstudio.bench.metrics import pixel
from flowstudio.metrics.inputs import Inputs
from flowstudio.metrics.library._shared import delta_e, frames, ssim_maps
from flowstudio.metrics.registry import Skip, Value, metric

EDIT = ("edit",)
EMPTY = "the edit region is empty"


def _error(x: Inputs) -> Any:
    return x.cached("gt_error", lambda: pixel.squared_error_map(x["output"], x["truth"]))


def _ssim(x: Inputs) -> Any:
    return ssim_maps(x, "truth")


def _or_skip(value: float | None, reason: str) -> Value:
    return Skip(reason) if value is None else float(value)


def _psnr(x: Inputs, name: str, region: str | None = None) -> float | None:
    """PSNR to the ground truth (over ``region``): pixel.psnr_from_error, from per-frame values that
    the frame-parallel path may already have reduced."""
    per_frame = frames(x, name, lambda: pixel.frame_psnrs(_error(x), None if region is None else x[region]))
    return pixel.mean_of_frames(per_frame)


def _ssim_mean(x: Inputs, name: str, region: Any) -> float | None:
    """SSIM to the ground truth over ``region()`` (``None``: the interior, as pixel.ssim_from_maps)."""

    def per_frame() -> list[float | None]:
        inside = region()
        return pixel.frame_means(_ssim(x), inside, border=pixel.SSIM_BORDER if inside is None else 0)

    return pixel.mean_of_frames(frames(x, name, per_frame))


@metric(
    "gt_psnr",
    suites=EDIT,
    tier="offline",
    higher_is_better=True,
    unit="dB",
    version="1",
    description="PSNR of the output against the ground-truth target",
    needs=("output", "truth"),
)
def gt_psnr(x: Inputs) -> Value:
    return _or_skip(_psnr(x, "gt_psnr"), "no pixel to compare")


@metric(
    "gt_ssim",
    suites=EDIT,
    tier="offline",
    higher_is_better=True,
    unit="",
    version="1",
    description="SSIM against the ground-truth target",
    needs=("output", "truth"),
)
def gt_ssim(x: Inputs) -> Value:
    return _or_skip(_ssim_mean(x, "gt_ssim", lambda: None), "no pixel to compare")


@metric(
    "gt_psnr_edit",
    suites=EDIT,
    tier="offline",
    higher_is_better=True,
    unit="dB",
    version="1",
    description="PSNR against the target inside the edit region",
    needs=("output", "truth", "edit_region"),
)
def gt_psnr_edit(x: Inputs) -> Value:
    return _or_skip(_psnr(x, "gt_psnr_edit", "edit_region"), EMPTY)


@metric(
    "gt_ssim_edit",
    suites=EDIT,
    tier="offline",
    higher_is_better=True,
    unit="",
    version="1",
    description="SSIM against the target inside the edit region",
    needs=("output", "truth", "edit_region"),
)
def gt_ssim_edit(x: Inputs) -> Value:
    return _or_skip(_ssim_mean(x, "gt_ssim_edit", lambda: x["edit_region"]), EMPTY)


@metric(
    "gt_ssim_outside",
    suites=EDIT,
    tier="offline",
    higher_is_better=True,
    unit="",
    version="1",
    description="SSIM against the target outside the edit region",
    needs=("output", "truth", "edit_region"),
)
def gt_ssim_outside(x: Inputs) -> Value:
    outside = _ssim_mean(x, "gt_ssim_outside", lambda: ~x["edit_region"])
    return _or_skip(outside, "the edit region covers every pixel")


@metric(
    "color_fidelity",
    suites=EDIT,
    tier="offline",
    higher_is_better=False,
    unit="dE00",
    version="1",
    description="mean CIEDE2000 to the target inside the edit region",
    needs=("output", "truth", "edit_region"),
)
def color_fidelity(x: Inputs) -> Value:
    return _or_skip(delta_e(x, "truth", "edit_region"), EMPTY)
