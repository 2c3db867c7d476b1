"""The object of a product shot, found without a mask: what the frame's border colours do not explain.

A product shot keeps its product away from the frame's border, so the border shows only background.
:func:`estimate_mask` finds the product from that alone (no model, no weights): the ShapeWorld readers
read generated clips with it (``flowstudio.worlds.readers``), and the edit engine's swap composite checks
its GrabCut cut of the old product against it (``flowstudio.edit.blending``).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from flowstudio.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["check_clip", "estimate_mask"]


def check_clip(clip: object) -> np.ndarray:
    """A uint8 ``(T, H, W, 3)`` clip (an ``(H, W, 3)`` frame becomes a clip of one), else InputError."""
    if (
        not isinstance(clip, np.ndarray)
        or clip.dtype != np.uint8
        or clip.ndim not in (3, 4)
        or clip.shape[-1] != 3
    ):
        raise InputError(
            "clip must be a uint8 numpy array (frames, height, width, 3) or (height, width, 3), got "
            f"{getattr(clip, 'dtype', type(clip).__name__)} {getattr(clip, 'shape', '')}"
        )
    clip = clip if clip.ndim == 4 else clip[None]
    if min(clip.shape[1:3]) < 16:
        raise InputError(f"clip frames must be at least 16x16 pixels, got {clip.shape[1]}x{clip.shape[2]}")
    return clip


# --------------------------------------------------------------------------------------------
# Mask estimation (no mask given)


_HIST_BITS = 5  # background colour histogram: 2**bits levels per channel
_HIST_MIN_SHARE = 0.0002  # a colour bin is background when this share of border pixels falls near it


def estimate_mask(clip: np.ndarray, *, halo: bool = False, fallback: bool = True) -> np.ndarray:
    """Estimate the object mask of a clip without ground truth, bool ``(T, H, W)``.

    ShapeWorld keeps the object away from the frame border, so the border shows only background. A
    pixel is background when its colour (RGB, 32 levels per channel, one-level tolerance) is common
    on the borders of the clip, or, when a plane fitted to a frame's border explains it (plain,
    gradient, clear sky), when it is within a tolerance of that plane. Candidates are smoothed by a
    majority vote in a small window and closed; the largest blob near the centre (with big blobs
    inside its box), holes under 2% of it filled, is the object. Objects whose colours also occur in
    the background (a white product on marble, tiles or a grey gradient) come out partial.

    On a smooth background the soft halo a generated object is drawn with is left out
    (:func:`_without_halo`) unless ``halo`` is true: the object's shape and colour are read without
    it, and the background reader leaves it out of the background (it is not background either).

    When nothing stands out in any frame the readers get a central ellipse (with a warning), so that
    they read something; ``fallback=False`` returns the empty mask instead (for callers that must not
    act on a guess: the edit engine's colour cut).
    """
    clip = check_clip(clip)
    t, h, w, _ = clip.shape
    unit = min(h, w)
    band = max(2, round(0.08 * unit))
    border = np.ones((h, w), bool)
    border[band : h - band, band : w - band] = False
    levels = 1 << _HIST_BITS
    q = (clip >> (8 - _HIST_BITS)).astype(np.int32)
    bins = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]
    hist = np.bincount(bins[:, border].ravel(), minlength=levels**3).reshape(levels, levels, levels)
    # one-level tolerance: a 3x3x3 max filter on the histogram
    padded = np.pad(hist.astype(np.float32), 1)
    near = np.zeros(hist.shape, np.float32)
    for dr in range(3):
        for dg in range(3):
            for db in range(3):
                np.maximum(near, padded[dr : dr + levels, dg : dg + levels, db : db + levels], out=near)
    common = near.ravel() >= max(2.0, _HIST_MIN_SHARE * border.sum() * t)
    candidate = ~common[bins]
    # smooth backgrounds (plain, gradient, clear sky): distance to a plane fitted to each frame's border
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / unit
    design = np.stack([np.ones(int(border.sum()), np.float32), xx[border], yy[border]], 1)
    full = np.stack([np.ones(h * w, np.float32), xx.ravel(), yy.ravel()], 1)
    out = np.zeros((t, h, w), bool)
    size = max(3, round(0.05 * unit) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    for i in range(t):
        frame = clip[i].reshape(-1, 3).astype(np.float32)
        samples = frame[border.ravel()]
        coef, *_ = np.linalg.lstsq(design, samples, rcond=None)
        tolerance = float(np.percentile(np.abs(samples - design @ coef).max(axis=1), 99.5))
        if tolerance < 24.0:  # the plane explains the border: a smooth background
            distance = np.abs(frame - full @ coef).max(axis=1).reshape(h, w)
            threshold = max(10.0, 1.5 * tolerance)
            cand = distance > threshold if halo else _without_halo(distance, threshold, border)
        else:
            cand = candidate[i]
        # patterns and highlights can match the background: vote in a window, then close
        cand = cv2.blur(cand.astype(np.float32), (size, size)) > 0.5
        cand[border] = False
        cand = cv2.morphologyEx(cand.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
        out[i] = _central_blob(cand, unit)
    if fallback and not out.any():  # nothing stands out anywhere: fall back to a central ellipse
        logger.warning("estimate_mask found no object; using a central ellipse")
        out[:] = ((xx - w / unit / 2) / 0.15) ** 2 + ((yy - h / unit / 2) / 0.22) ** 2 < 1.0
    return out


_HALO_RATIO = 3.0  # object pixels stand this many times further from the background than a halo's
_HALO_MIN_OBJECT = 0.25  # ... and are at least this share of what stood out


def _without_halo(distance: np.ndarray, threshold: float, border: np.ndarray) -> np.ndarray:
    """Pixels that stand out from a smooth background, without the soft halo around a drawn object.

    Generated and reconstructed clips draw a light or dark fringe around the object, a few tens of
    levels off the background where the object is 100+ off: taken as object, it rounds every
    silhouette (a ring or a cone read "ball"). When what stands out splits in two (Otsu) with the
    upper part ``_HALO_RATIO`` times further out and at least ``_HALO_MIN_OBJECT`` of it, the lower
    part is the halo and is dropped. Renders have no halo and rarely split so; a white object on a
    light background, all near the background, keeps the plain threshold.
    """
    cand = distance > threshold
    inner = distance[cand & ~border]
    if inner.size <= 20:
        return cand
    level = np.clip(inner, 0, 255).astype(np.uint8).reshape(-1, 1)
    split, _ = cv2.threshold(level, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    low, high = inner[inner <= split], inner[inner > split]
    if (
        low.size
        and high.size
        and high.mean() > _HALO_RATIO * low.mean()
        and high.size >= _HALO_MIN_OBJECT * inner.size
    ):
        return distance > max(threshold, float(split))
    return cand


def _central_blob(candidate: np.ndarray, unit: int) -> np.ndarray:
    """The largest connected component (ties to the centre), small holes filled."""
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    if count <= 1:
        return np.zeros(candidate.shape, bool)
    h, w = candidate.shape
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    dist = np.hypot(centroids[1:, 0] - w / 2, centroids[1:, 1] - h / 2) / unit
    best = 1 + int(np.argmax(areas * np.exp(-((dist / 0.3) ** 2))))
    blob = labels == best
    # also keep big components touching the blob's box (an object split by a highlight or a pattern)
    x, y, bw, bh = stats[best, :4]
    for k in range(1, count):
        if k != best and areas[k - 1] > 0.05 * areas[best - 1]:
            kx, ky, kw, kh = stats[k, :4]
            if kx >= x - 2 and ky >= y - 2 and kx + kw <= x + bw + 2 and ky + kh <= y + bh + 2:
                blob |= labels == k
    return _fill_small_holes(blob, max(4, int(0.02 * blob.sum())))


def _fill_small_holes(blob: np.ndarray, max_area: int) -> np.ndarray:
    inverse = (~blob).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(inverse, connectivity=4)
    h, w = blob.shape
    out = blob.copy()
    for k in range(1, count):
        x, y, bw, bh, area = stats[k]
        touches = x == 0 or y == 0 or x + bw == w or y + bh == h
        if not touches and area <= max_area:
            out |= labels == k
    return out
