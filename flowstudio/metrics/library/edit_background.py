"""Preservation: how close the output stays to the source in the region the edit must keep.

``bg_ssim`` uses the kept region eroded by the SSIM window radius: a pixel whose window reaches into
the edited region would otherwise be penalised for the edit itself (the oracle would score below 1).
"""

from __future__ import annotations

import numpy as np

from flowstudio.bench.metrics import pixel
from flowstudio.metrics.inputs import Inputs
from flowstudio.metrics.library._shared import delta_e, frames, ssim_maps
from flowstudio.metrics.registry import Skip, Value, metric

EDIT = ("edit",)
NEEDS = ("output", "source", "kept_region")
EMPTY = "the kept region is empty"


def _or_skip(value: float | None) -> Value:
    return Skip(EMPTY) if value is None else float(value)


@metric(
    "bg_psnr",
    suites=EDIT,
    tier="offline",
    higher_is_better=True,
    unit="dB",
    version="1",
    description="PSNR to the source in the region the edit must keep",
    needs=NEEDS,
)
def bg_psnr(x: Inputs) -> Value:
    def per_frame() -> list[float | None]:
        # pixel.psnr's own steps; the map may already be there (flowstudio.bench.metrics.parallel)
        error = x.cached("bg_error", lambda: pixel.squared_error_map(x["output"], x["source"]))
        return pixel.frame_psnrs(error, x["kept_region"])

    return _or_skip(pixel.mean_of_frames(frames(x, "bg_psnr", per_frame)))


@metric(
    "bg_ssim",
    suites=EDIT,
    tier="offline",
    higher_is_better=True,
    unit="",
    version="1",
    description="SSIM to the source in the region the edit must keep",
    needs=NEEDS,
)
def bg_ssim(x: Inputs) -> Value:
    def per_frame() -> list[float | None]:  # pixel.ssim_from_maps over the eroded region, frame by frame
        return pixel.frame_means(ssim_maps(x, "source"), erode(x["kept_region"], pixel.SSIM_BORDER))

    return _or_skip(pixel.mean_of_frames(frames(x, "bg_ssim", per_frame)))


@metric(
    "bg_ciede2000",
    suites=EDIT,
    tier="offline",
    higher_is_better=False,
    unit="dE00",
    version="1",
    description="mean CIEDE2000 to the source in the region the edit must keep",
    needs=NEEDS,
)
def bg_ciede2000(x: Inputs) -> Value:
    return _or_skip(delta_e(x, "source", "kept_region"))


def erode(region: np.ndarray, radius: int) -> np.ndarray:
    """``region`` shrunk by ``radius`` pixels (per frame), or as it is where that would empty a frame."""
    import cv2

    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    out = region.copy()
    for i, frame in enumerate(region):
        eroded = cv2.erode(frame.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)
        if eroded.any():
            out[i] = eroded
    return out
