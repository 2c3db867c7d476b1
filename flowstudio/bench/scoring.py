"""Score one output clip against its test case: every offline metric, and the reference tier when asked.

Regions (bool ``(T, H, W)``):

* by ``case.preserve``: ``outside_mask`` (product, colour, material edits) -> the edit region is the
  union of the case's ``mask`` and ``target_mask``, the kept region the rest; ``inside_mask``
  (background edits) -> the kept region is the source mask (the product), the edit region outside
  the union of the masks; ``none`` (style edits) -> the edit region is every pixel and nothing is
  kept (``bg_*`` metrics are then not applicable).

A metric that does not apply (no ground truth, no mask, empty region) is absent from ``metrics`` and
listed in ``skipped`` with the reason; nothing is ever reported as a made-up number.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from flowstudio.bench.manifest import Case
from flowstudio.bench.metrics import color, pixel, temporal
from flowstudio.bench.metrics.attributes import attribute_accuracy
from flowstudio.errors import InputError

logger = logging.getLogger(__name__)


def regions(
    case: Case, mask: np.ndarray | None, target_mask: np.ndarray | None, shape: tuple[int, int, int]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(edit region, kept region) of a case, bool ``shape``; ``None`` where undefined (no mask).

    ``outside_mask``: edit = union of the masks, kept = the rest. ``inside_mask`` (background edits):
    kept = the source object mask, edit = outside the union of the masks. ``none`` (style): edit =
    every pixel, kept = nothing.
    """
    masks = [m for m in (mask, target_mask) if m is not None]
    union = None
    if masks:
        union = masks[0].copy()
        for m in masks[1:]:
            union |= m
    if case.preserve == "none":
        return np.ones(shape, bool), None
    if case.preserve == "inside_mask":
        return (None if union is None else ~union), mask
    return union, (None if union is None else ~union)


def check_output(frames: Any, source: np.ndarray, case_id: str) -> np.ndarray:
    """The output must be uint8 ``(T, H, W, 3)`` with the source's frames and size."""
    if (
        not isinstance(frames, np.ndarray)
        or frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[-1] != 3
    ):
        raise InputError(
            f"case {case_id}: the output must be a uint8 (frames, height, width, 3) array, got "
            f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}"
        )
    if frames.shape != source.shape:
        raise InputError(
            f"case {case_id}: the output is {frames.shape[0]} frames of {frames.shape[1]}x{frames.shape[2]}"
            f" (HxW) but the source is {source.shape[0]} frames of {source.shape[1]}x{source.shape[2]};"
            " outputs must keep the source's frames and size"
        )
    return frames


def score_case(
    case: Case, output: np.ndarray, *, reference: Any | None = None, source: np.ndarray | None = None
) -> dict[str, Any]:
    """All metrics of one case.

    Args:
        case: the test case.
        output: the edited clip, uint8 ``(T, H, W, 3)``, same shape as the source.
        reference: a :class:`~flowstudio.bench.metrics.reference.ReferenceScorer`, or ``None`` for the
            offline tier only.
        source: the source clip when already loaded.

    Returns:
        ``{"metrics": {name: float}, "skipped": {name: reason}}``.
    """
    source = case.load_source() if source is None else source
    output = check_output(output, source, case.id)
    target = case.load_target()
    mask, target_mask = case.load_mask(), case.load_target_mask()
    edit, kept = regions(case, mask, target_mask, source.shape[:3])
    metrics: dict[str, float] = {}
    skipped: dict[str, str] = {}

    def put(name: str, value: float | None, reason: str) -> None:
        if value is None:
            skipped[name] = reason
        else:
            metrics[name] = float(value)

    no_gt = "the case has no ground-truth target"
    if target is not None:
        error = pixel.squared_error_map(output, target)
        ssim_t = pixel.ssim_maps(output, target)
        put("gt_psnr", pixel.psnr_from_error(error), no_gt)
        put("gt_ssim", pixel.ssim_from_maps(ssim_t), no_gt)
        if edit is not None:
            put("gt_psnr_edit", pixel.psnr_from_error(error, edit), "the edit region is empty")
            put("gt_ssim_edit", pixel.ssim_from_maps(ssim_t, edit), "the edit region is empty")
            put("gt_ssim_outside", pixel.ssim_from_maps(ssim_t, ~edit), "the edit region covers every pixel")
        else:
            for name in ("gt_psnr_edit", "gt_ssim_edit", "gt_ssim_outside"):
                skipped[name] = "the case has no mask"
        put(
            "color_fidelity",
            None if edit is None else color.delta_e_clip(output, target, edit),
            "the case has no mask" if edit is None else "the edit region is empty",
        )
    else:
        for name in (
            "gt_psnr",
            "gt_ssim",
            "gt_psnr_edit",
            "gt_ssim_edit",
            "gt_ssim_outside",
            "color_fidelity",
        ):
            skipped[name] = no_gt
    if kept is None:
        reason = (
            "the edit type keeps no region (preserve: none)"
            if case.preserve == "none"
            else "the case has no mask"
        )
        for name in ("bg_psnr", "bg_ssim", "bg_ciede2000"):
            skipped[name] = reason
    else:
        put("bg_psnr", pixel.psnr(output, source, kept), "the kept region is empty")
        put(
            "bg_ssim", pixel.ssim(output, source, _erode(kept, pixel.SSIM_BORDER)), "the kept region is empty"
        )
        put("bg_ciede2000", color.delta_e_clip(output, source, kept), "the kept region is empty")
    if output.shape[0] >= 2:
        flow = temporal.optical_flow(output)
        stats = temporal.warp_stats(output, flow, temporal.optical_flow(output, backward=True))
        put("warp_error", stats["warp_error"], "no consistent flow between frames")
        put("flicker", stats["flicker"], "no consistent flow between frames")
        put("motion_epe", temporal.motion_epe(temporal.optical_flow(source), flow), "fewer than 2 frames")
    else:
        for name in ("warp_error", "flicker", "motion_epe"):
            skipped[name] = "a single frame has no motion"
    attr = attribute_accuracy(output, case.attributes, target_mask if target_mask is not None else mask)
    if "value" in attr:
        metrics["attr_acc"] = attr["value"]
    else:
        skipped["attr_acc"] = attr["reason"]
    if reference is not None:
        for name, value in reference.score_case(output, source, case.target_prompt, kept).items():
            if isinstance(value, dict):
                skipped[name] = value.get("reason", "skipped")
            elif value is None:
                skipped[name] = "not applicable"
            else:
                metrics[name] = float(value)
    return {
        "metrics": metrics,
        "skipped": skipped,
        **({"attribute": {k: v for k, v in attr.items() if k != "value"}} if "value" in attr else {}),
    }


def _erode(region: np.ndarray, radius: int) -> np.ndarray:
    """``region`` shrunk by ``radius`` pixels (per frame), or as it is where that would empty a frame.

    ``bg_ssim`` uses the kept region eroded by the SSIM window radius: a pixel whose window reaches
    into the edited region would otherwise be penalised for the edit itself (the oracle would score
    below 1).
    """
    import cv2

    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    out = region.copy()
    for i, frame in enumerate(region):
        eroded = cv2.erode(frame.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)
        if eroded.any():
            out[i] = eroded
    return out
