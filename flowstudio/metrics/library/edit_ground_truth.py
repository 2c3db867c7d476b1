"""Closeness of an edit to its ground-truth target (toy worlds render it exactly): PSNR and SSIM over
the frame, inside the edit region and (SSIM) outside it, and CIEDE2000 colour fidelity in the region."""

from __future__ import annotations

from typing import Any

from flowstudio.bench.metrics import pixel
from flowstudio.metrics.inputs import Inputs
from flowstudio.metrics.library._shared import delta_e, ssim_maps
from flowstudio.metrics.registry import Skip, Value, metric

EDIT = ("edit",)
EMPTY = "the edit region is empty"


def _error(x: Inputs) -> Any:
    return x.cached("gt_error", lambda: pixel.squared_error_map(x["output"], x["truth"]))


def _ssim(x: Inputs) -> Any:
    return ssim_maps(x, "truth")


def _or_skip(value: float | None, reason: str) -> Value:
    return Skip(reason) if value is None else float(value)


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
    return _or_skip(pixel.psnr_from_error(_error(x)), "no pixel to compare")


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
    return _or_skip(pixel.ssim_from_maps(_ssim(x)), "no pixel to compare")


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
    return _or_skip(pixel.psnr_from_error(_error(x), x["edit_region"]), EMPTY)


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
    return _or_skip(pixel.ssim_from_maps(_ssim(x), x["edit_region"]), EMPTY)


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
    return _or_skip(pixel.ssim_from_maps(_ssim(x), ~x["edit_region"]), "the edit region covers every pixel")


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
