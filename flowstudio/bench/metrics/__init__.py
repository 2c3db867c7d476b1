"""Benchmark metrics.

Offline tier (no weights, runs in CI): :mod:`.pixel` (PSNR, SSIM, masked), :mod:`.color` (CIELAB,
CIEDE2000), :mod:`.temporal` (optical-flow warp error, flicker, motion fidelity), :mod:`.attributes`
(ShapeWorld attribute accuracy). Reference tier (local weights verified by SHA-256):
:mod:`.reference`, with every weight file registered in :mod:`.registry`.

:data:`METRICS` describes every per-case metric a result can hold: its tier, direction, unit and
version (bumped whenever a definition changes, and recorded in every results JSON).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    """What a metric means. ``higher_is_better`` drives the composite and the report's arrows."""

    name: str
    tier: str  # "offline" or "reference"
    higher_is_better: bool
    unit: str
    version: str
    description: str
    needs: str = ""  # what a case must have: "target", "mask", "shapeworld", ...


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo(
            "gt_psnr",
            "offline",
            True,
            "dB",
            "1",
            "PSNR of the output against the ground-truth target",
            "target",
        ),
        MetricInfo("gt_ssim", "offline", True, "", "1", "SSIM against the ground-truth target", "target"),
        MetricInfo(
            "gt_psnr_edit",
            "offline",
            True,
            "dB",
            "1",
            "PSNR against the target inside the edit region",
            "target+mask",
        ),
        MetricInfo(
            "gt_ssim_edit",
            "offline",
            True,
            "",
            "1",
            "SSIM against the target inside the edit region",
            "target+mask",
        ),
        MetricInfo(
            "gt_ssim_outside",
            "offline",
            True,
            "",
            "1",
            "SSIM against the target outside the edit region",
            "target+mask",
        ),
        MetricInfo(
            "color_fidelity",
            "offline",
            False,
            "dE00",
            "1",
            "mean CIEDE2000 to the target inside the edit region",
            "target+target_mask",
        ),
        MetricInfo(
            "bg_psnr",
            "offline",
            True,
            "dB",
            "1",
            "PSNR to the source in the region the edit must keep",
            "mask",
        ),
        MetricInfo(
            "bg_ssim", "offline", True, "", "1", "SSIM to the source in the region the edit must keep", "mask"
        ),
        MetricInfo(
            "bg_ciede2000",
            "offline",
            False,
            "dE00",
            "1",
            "mean CIEDE2000 to the source in the region the edit must keep",
            "mask",
        ),
        MetricInfo(
            "warp_error",
            "offline",
            False,
            "levels",
            "1",
            "flow-compensated mean |frame t - warped frame t+1| of the output (8-bit levels)",
        ),
        MetricInfo(
            "flicker",
            "offline",
            False,
            "levels",
            "1",
            "flow-compensated change of mean luma between consecutive output frames",
        ),
        MetricInfo(
            "motion_epe",
            "offline",
            False,
            "px",
            "1",
            "end-point error between the optical flow of the source and of the output",
        ),
        MetricInfo(
            "attr_acc",
            "offline",
            True,
            "",
            "1",
            "ShapeWorld: the edited attribute read off the output equals the target",
            "shapeworld",
        ),
        MetricInfo(
            "clip_text", "reference", True, "cos", "1", "CLIP cosine of output frames and target prompt"
        ),
        MetricInfo("clip_frame", "reference", True, "cos", "1", "CLIP cosine of consecutive output frames"),
        MetricInfo(
            "dino_structure",
            "reference",
            False,
            "",
            "1",
            "DINO self-similarity structure distance, source vs output",
        ),
        MetricInfo("lpips_bg", "reference", False, "", "1", "LPIPS(AlexNet) to the source, kept region only"),
    )
}

SET_METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo(
            "fvd", "reference", False, "", "1", "Frechet distance of I3D features, outputs vs references"
        ),
        MetricInfo("fid", "reference", False, "", "1", "Frechet distance of Inception features, frames"),
    )
}
