"""Clip filters of the pair-dataset pipeline (issue 17, item 1): each measures one way a clip is unfit
for training, on uint8 ``(T, H, W, 3)`` frames, and :func:`check_clip` names every reason that applies.

* ``blurry``: median variance of the Laplacian of the grey frames (OpenCV); out of focus, heavy
  compression;
* ``static``: mean Farneback optical-flow magnitude between sampled frames (OpenCV); a still image
  posing as video;
* ``black_frames``: fraction of frames whose mean luma is under 16/255; fades, dead captures;
* ``frozen_frames``: fraction of consecutive frames that repeat exactly (max difference <= 1);
  dropped-frame padding.

Not yet: burnt-in text (subtitles, watermarks, price tags). A model-free detector (strokes that
persist while the scene moves, joined into word-shaped components) caught outlined text on 38 of 40
ShapeWorld clips but also flagged 8 of 40 clean ones (static tiled and dotted backgrounds read as
words), so it was not kept; an OCR or text-detection model from local weights is the way.

The thresholds (:class:`FilterConfig`) are set on ShapeWorld renders (40 clean clips pass, and each
defect made on them is caught; ``tests/test_data_filters.py``). Real footage may need others: they are
settings, recorded in the dataset's datasheet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class FilterConfig:
    min_sharpness: float = 20.0  # Laplacian variance (ShapeWorld: clean >= 115, blurred by sigma 3 <= 11)
    min_motion: float = 0.01  # pixels per frame (ShapeWorld: clean clips >= 0.03, a still image <= 0.002)
    max_black_fraction: float = 0.0
    max_frozen_fraction: float = 0.25

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _grey(clip: np.ndarray) -> np.ndarray:
    import cv2

    return np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in clip])


def sharpness(clip: np.ndarray) -> float:
    """Median over frames of the variance of the Laplacian of the grey frame (higher: sharper)."""
    import cv2

    return float(np.median([cv2.Laplacian(g, cv2.CV_64F).var() for g in _grey(clip)]))


def motion(clip: np.ndarray, pairs: int = 4) -> float:
    """Mean optical-flow magnitude (pixels per frame) over ``pairs`` evenly spaced frame pairs."""
    import cv2

    grey = _grey(clip)
    if len(grey) < 2:
        return 0.0
    starts = np.unique(np.linspace(0, len(grey) - 2, pairs).round().astype(int))
    flows = [
        cv2.calcOpticalFlowFarneback(grey[i], grey[i + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0) for i in starts
    ]
    return float(np.mean([np.linalg.norm(f, axis=-1).mean() for f in flows]))


def black_fraction(clip: np.ndarray, level: float = 16.0) -> float:
    """Fraction of frames whose mean luma is under ``level`` (of 255)."""
    return float(np.mean(_grey(clip).reshape(len(clip), -1).mean(axis=1) < level))


def frozen_fraction(clip: np.ndarray) -> float:
    """Fraction of consecutive frame pairs that are the same frame (max absolute difference <= 1)."""
    if len(clip) < 2:
        return 0.0
    steps = np.abs(clip[1:].astype(np.int16) - clip[:-1].astype(np.int16))
    diffs = steps.reshape(len(clip) - 1, -1).max(axis=1)
    return float(np.mean(diffs <= 1))


def measure(clip: np.ndarray) -> dict[str, float]:
    """Every filter's measure of one clip (recorded per clip in the manifest)."""
    return {
        "sharpness": sharpness(clip),
        "motion": motion(clip),
        "black_fraction": black_fraction(clip),
        "frozen_fraction": frozen_fraction(clip),
    }


def reasons(measures: dict[str, float], config: FilterConfig) -> list[str]:
    """The filters a clip fails (empty: it passes), the most specific first: a black clip is also
    blurry and static, and a repeated frame also static, so the first reason names the defect."""
    failed = []
    if measures["black_fraction"] > config.max_black_fraction:
        failed.append("black_frames")
    if measures["frozen_fraction"] > config.max_frozen_fraction:
        failed.append("frozen_frames")
    if measures["motion"] < config.min_motion:
        failed.append("static")
    if measures["sharpness"] < config.min_sharpness:
        failed.append("blurry")
    return failed


def check_clip(clip: np.ndarray, config: FilterConfig | None = None) -> tuple[dict[str, float], list[str]]:
    """``(measures, reasons)`` of one clip."""
    values = measure(np.asarray(clip))
    return values, reasons(values, config or FilterConfig())
