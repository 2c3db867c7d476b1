"""Analytic attribute readers for ShapeWorld clips: colour, shape, background, style.

They read a rendered or a generated clip, uint8 ``(T, H, W, 3)``, with the object mask when there is
one (bool ``(T, H, W)``); without it the object region is estimated by :func:`estimate_mask`. Each
returns ``(name, confidence)`` with ``confidence`` in ``[0, 1]``.

- :func:`read_color`: every object pixel votes for the nearest named colour in CIELAB, compared with
  each colour's shading family (albedo times 0.12..1, lifted toward white, and posterized), so
  shading, pattern marks (a darker shade of the same colour) and highlights do not move the answer;
  votes are weighted by lightness (dark pixels carry little hue).
- :func:`read_shape`: silhouette features of the mask per frame (aspect, extent, solidity, holes, a
  normalised width profile), median over frames, nearest class under a diagonal Gaussian.
- :func:`read_background`: colour and texture statistics of the pixels away from the object (plane
  fit residual, gradient anisotropy, edge density, blue and cloud fractions, ...), same classifier.
- :func:`read_style`: whole-frame statistics (blockiness on the pixel grid, mass on posterize levels,
  edge sharpness, grain, lifted blacks) and Laplacian medians inside and outside the object (paper
  grain), same classifier.

The classifiers are per-class means and standard deviations of those features (one Gaussian per
class and condition: clean renders and degraded ones), fitted once on renders by
:func:`fit_reader_models` (``python benchmarks/shapes_readers.py --fit``) and stored as constants in
:mod:`flowstudio.worlds._reader_models`; seeds used for fitting are never used for evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from flowstudio.errors import InputError, NoObjectError
from flowstudio.object_mask import check_clip as _check_clip
from flowstudio.object_mask import estimate_mask
from flowstudio.worlds.shapes import (
    _POSTERIZE_LEVELS,
    BACKGROUNDS,
    COLORS,
    MATERIALS,
    SHAPES,
    STYLES,
    _pixel_block,
)

__all__ = [
    "NO_OBJECT",
    "PROMPT_READERS",
    "estimate_mask",
    "read_or_no_object",
    "read_background",
    "read_color",
    "read_shape",
    "read_style",
    "read_material",
    "material_family",
    "background_features",
    "material_features",
    "shape_features",
    "style_features",
    "fit_reader_models",
]


# --------------------------------------------------------------------------------------------
# Inputs


def _check_mask(mask: object, clip: np.ndarray) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.ndim not in (2, 3):
        raise InputError(
            f"mask must be a bool numpy array (frames, height, width), got {type(mask).__name__}"
        )
    mask = mask.astype(bool, copy=False)
    if mask.ndim == 2:
        mask = np.broadcast_to(mask, clip.shape[:3])
    if mask.shape != clip.shape[:3]:
        raise InputError(f"mask shape {mask.shape} does not match clip frames {clip.shape[:3]}")
    return mask


def _object_mask(clip: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return estimate_mask(clip) if mask is None else _check_mask(mask, clip)


NO_OBJECT = "no object"


def read_or_no_object(reader: Callable[[np.ndarray], tuple[str, float]], clip: np.ndarray) -> str:
    """What ``reader`` reads in ``clip``, or :data:`NO_OBJECT` when the clip holds no object to read.

    A generated clip that drew nothing is wrong on every attribute (as a person would score it), not a
    reason to stop a benchmark or a training run's evaluation: every loop that scores generations reads
    through this one rule. Other bad input (a wrong clip shape) still raises.
    """
    try:
        return reader(clip)[0]
    except NoObjectError:
        return NO_OBJECT


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill every hole of a 2-D mask (flood fill of the background from outside)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    return (padded | (1 - flood)).astype(bool)[1:-1, 1:-1]


# --------------------------------------------------------------------------------------------
# Classifier: diagonal Gaussian per class, constants fitted by fit_reader_models


@dataclass(frozen=True)
class _Model:
    """Diagonal Gaussians, one per row; several rows may share a class (clean and degraded modes)."""

    classes: tuple[str, ...]  # class of each row
    mean: np.ndarray  # (rows, features)
    std: np.ndarray  # (rows, features)

    def predict(self, features: np.ndarray) -> tuple[str, float]:
        z = (features[None, :] - self.mean) / self.std
        log_like = -0.5 * np.sum(np.minimum(z * z, 400.0), axis=1) - np.sum(np.log(self.std), axis=1)
        post = np.exp(log_like - log_like.max())
        names = sorted(set(self.classes))
        totals = np.asarray([post[[c == name for c in self.classes]].sum() for name in names])
        best = int(np.argmax(totals))
        return names[best], float(totals[best] / totals.sum())


def _load_model(name: str) -> _Model:
    from flowstudio.worlds import _reader_models

    table = getattr(_reader_models, name)
    classes = tuple(table["classes"])
    return _Model(classes, np.asarray(table["mean"], np.float64), np.asarray(table["std"], np.float64))


_MODELS: dict[str, _Model] = {}


def _model(name: str) -> _Model:
    if name not in _MODELS:
        _MODELS[name] = _load_model(name)
    return _MODELS[name]


# --------------------------------------------------------------------------------------------
# Colour


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 or float in [0, 255], ``(..., 3)`` -> CIELAB float32 ``(..., 3)`` (L 0..100)."""
    flat = np.asarray(rgb, np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(flat, cv2.COLOR_RGB2Lab).reshape(*np.shape(rgb)[:-1], 3)


def _color_family() -> tuple[np.ndarray, np.ndarray]:
    """Reference Lab values of each colour and the colour they belong to.

    Each colour's family: ``albedo * s * (1 - w) + 255 w`` for shading ``s`` in [0.12, 1] and a lift toward
    white ``w`` (watercolour wash, highlights), plus the distinct posterized values of ``albedo * s`` (the
    posterize style moves shades across hue boundaries) except pure greys, which belong to white.
    """
    step = 255.0 / (_POSTERIZE_LEVELS - 1)
    refs, owner = [], []
    for k, name in enumerate(COLORS):
        albedo = np.asarray(COLORS[name], np.float32)
        for s in np.geomspace(0.12, 1.0, 14):
            for lift in (0.0, 0.15, 0.3, 0.5):
                refs.append(albedo * s * (1 - lift) + 255.0 * lift)
                owner.append(k)
        posterized = np.unique(np.round(np.outer(np.geomspace(0.12, 1.0, 80), albedo) / step) * step, axis=0)
        for value in posterized:
            if name == "white" or np.ptp(value) > 0:
                refs.append(value)
                owner.append(k)
    return _lab(np.asarray(refs)), np.asarray(owner)


_FAMILY_LAB, _FAMILY_OWNER = _color_family()


def read_color(
    clip: np.ndarray, mask: np.ndarray | None = None, *, max_pixels: int = 4000
) -> tuple[str, float]:
    """Named colour of the object: ``(name, share of object pixels that vote for it)``.

    Args:
        clip: uint8 ``(T, H, W, 3)`` (or one frame ``(H, W, 3)``).
        mask: bool ``(T, H, W)`` object mask; estimated when ``None``.
        max_pixels: object pixels sampled (evenly) for the vote.
    """
    clip = _check_clip(clip)
    mask = _object_mask(clip, mask)
    core = _erode(mask)
    if core.sum() < 8:
        core = mask
    pixels = clip[core]
    if len(pixels) == 0:
        raise NoObjectError("read_color found no object pixels (empty mask); pass the object mask")
    if len(pixels) > max_pixels:
        pixels = pixels[np.linspace(0, len(pixels) - 1, max_pixels).astype(np.int64)]
    lab = _lab(pixels)
    d = (_FAMILY_LAB**2).sum(axis=1)[None, :] - 2.0 * lab @ _FAMILY_LAB.T  # squared distance minus |lab|^2
    # dark pixels say little about hue (posterize and compression distort them most): weight by L^2, flat
    # above L = 70 so that a glossy highlight does not outvote the body
    weight = np.minimum(lab[:, 0] / 100.0, 0.7) ** 2 + 1e-6
    votes = np.bincount(_FAMILY_OWNER[np.argmin(d, axis=1)], weights=weight, minlength=len(COLORS))
    best = int(np.argmax(votes))
    return list(COLORS)[best], float(votes[best] / votes.sum())


def _erode(mask: np.ndarray) -> np.ndarray:
    kernel = np.ones((3, 3), np.uint8)
    return np.stack([cv2.erode(m.astype(np.uint8), kernel).astype(bool) for m in mask])


# --------------------------------------------------------------------------------------------
# Shape

_PROFILE_ROWS = 12


def shape_features(mask: np.ndarray) -> np.ndarray:
    """Silhouette features of a mask ``(T, H, W)``, median over frames with an object.

    Features: log aspect (height / width), extent (area / box), solidity (area / convex hull), hole
    fraction, centroid height in the box, and the width of the filled silhouette at
    :data:`_PROFILE_ROWS` rows, relative to its widest row.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim == 2:
        mask = mask[None]
    rows = []
    for m in mask:
        if m.sum() < 6:
            continue
        ys, xs = np.nonzero(m)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        box = m[y0:y1, x0:x1]
        filled = _fill_holes(box)
        area, filled_area = float(box.sum()), float(filled.sum())
        points = np.stack([xs, ys], 1).astype(np.int32)
        hull = cv2.convexHull(points)
        hull_area = max(float(cv2.contourArea(hull)), 1.0)
        hgt, wid = y1 - y0, x1 - x0
        widths = filled.sum(axis=1).astype(np.float32)
        sample = np.interp(np.linspace(0, hgt - 1, _PROFILE_ROWS), np.arange(hgt), widths) / widths.max()
        centroid = (ys.mean() - y0 + 0.5) / hgt
        rows.append(
            [
                math.log(hgt / wid),
                area / (hgt * wid),
                min(1.0, filled_area / (hull_area + filled_area / 50)),
                (filled_area - area) / filled_area,
                centroid,
                *sample,
            ]
        )
    if not rows:
        raise NoObjectError("shape features need an object: the mask is empty in every frame")
    return np.median(np.asarray(rows, np.float64), axis=0)


def read_shape(clip: np.ndarray | None = None, mask: np.ndarray | None = None) -> tuple[str, float]:
    """Shape of the object from its silhouette: ``(name, posterior confidence)``.

    Args:
        clip: uint8 ``(T, H, W, 3)``; only used to estimate the mask when ``mask`` is ``None``.
        mask: bool ``(T, H, W)`` object mask.
    """
    if mask is None:
        if clip is None:
            raise InputError("read_shape needs a clip or a mask")
        mask = estimate_mask(clip)
    elif clip is not None:
        mask = _check_mask(mask, _check_clip(clip))
    return _model("SHAPE").predict(shape_features(mask))


# --------------------------------------------------------------------------------------------
# Background


def _sample_frames(t: int) -> list[int]:
    return sorted({0, t // 2, t - 1})


def background_features(clip: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Colour and texture statistics of the pixels away from the object, mean over three frames."""
    clip = _check_clip(clip)
    mask = _check_mask(mask, clip)
    t, h, w, _ = clip.shape
    unit = min(h, w)
    grow = max(3, round(0.04 * unit))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / unit
    feats = []
    for i in _sample_frames(t):
        keep = ~cv2.dilate(mask[i].astype(np.uint8), kernel).astype(bool)
        if keep.sum() < 0.1 * h * w:
            keep = np.ones((h, w), bool)
        frame = clip[i].astype(np.float32)
        lab = _lab(frame)
        gray = lab[..., 0]
        sel_lab = lab[keep]
        L, a, b = sel_lab[:, 0], sel_lab[:, 1], sel_lab[:, 2]
        design = np.stack([np.ones_like(xx[keep]), xx[keep], yy[keep]], 1)
        coef, *_ = np.linalg.lstsq(design, sel_lab, rcond=None)
        residual = sel_lab - design @ coef
        slope = float(np.sqrt((coef[1:] ** 2).sum()))
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
        inner = cv2.erode(keep.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        ax, ay = np.abs(gx[inner]), np.abs(gy[inner])
        mag = np.hypot(ax, ay)
        lap = np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=1)[inner])
        chroma = np.hypot(a, b)
        # axis alignment of strong edges: tiles are horizontal and vertical, marble veins are not
        strong = mag > max(8.0, float(np.percentile(mag, 90)))
        axis = (
            float(np.mean(np.minimum(ax[strong], ay[strong]) / (np.maximum(ax[strong], ay[strong]) + 1e-3)))
            if strong.sum() > 10
            else 0.5
        )
        feats.append(
            [
                float(L.mean()),
                float(a.mean()),
                float(b.mean()),
                float(L.std()),
                float(chroma.mean()),
                math.log1p(slope),
                math.log1p(float(residual[:, 0].std())),
                math.log1p(float(np.abs(residual).mean())),
                math.log1p(float(mag.mean())),
                float(ay.mean() / (ax.mean() + ay.mean() + 1e-3)),
                math.log1p(float(lap.mean())),
                float((mag > 20).mean()),
                axis,
                float(((b < -12) & (L > 40)).mean()),
                float(((L > 85) & (chroma < 10)).mean()),
                float(np.percentile(L, 95) - np.percentile(L, 5)),
            ]
        )
    return np.asarray(feats, np.float64).mean(axis=0)


def read_background(clip: np.ndarray, mask: np.ndarray | None = None) -> tuple[str, float]:
    """Background kind: ``(name, posterior confidence)``; the object region (mask) is left out."""
    clip = _check_clip(clip)
    mask = estimate_mask(clip, halo=True) if mask is None else _check_mask(mask, clip)
    return _model("BACKGROUND").predict(background_features(clip, mask))


# --------------------------------------------------------------------------------------------
# Material

_MATERIAL_FRAMES = 5
_MATERIAL_FEATURES = 26


def _material_frame(frame: np.ndarray, mask: np.ndarray) -> tuple[list[float], list[float]] | None:
    """Pattern and highlight statistics of one frame's object pixels (``None``: too few of them)."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if inner.sum() < 30:  # the outline is not a pattern, but a tiny object has no inside
        inner = mask
    if inner.sum() < 10:
        return None
    lab = _lab(frame.astype(np.float32))
    lightness = lab[..., 0]
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    # pattern marks are the base colour times a constant: a step in log lightness of any colour
    log_l = np.log(np.maximum(lightness, 1.0))
    gx = cv2.Sobel(log_l, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(log_l, cv2.CV_32F, 0, 1, ksize=3) / 8
    weight = inner.astype(np.float32)
    jxx = cv2.GaussianBlur(gx * gx * weight, (0, 0), 2.0)
    jyy = cv2.GaussianBlur(gy * gy * weight, (0, 0), 2.0)
    jxy = cv2.GaussianBlur(gx * gy * weight, (0, 0), 2.0)
    trace = jxx + jyy
    spread = np.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy)
    energy = trace[inner]
    # structure tensor: stripes are one orientation per window (coherent), dots and checks are not
    coherence = float(((spread / np.maximum(trace, 1e-6))[inner] * energy).sum() / max(energy.sum(), 1e-9))
    corners = float((((trace - spread) / 2)[inner] > 0.002).mean())
    magnitude = np.hypot(gx, gy)[inner]
    # edges of the marks, by image axis: stripes run with the turntable's axis (vertical edges),
    # checks add horizontal ones, dots every orientation
    strong = magnitude > 0.08
    if strong.sum() >= 8:
        angle = np.mod(np.arctan2(gy[inner][strong], gx[inner][strong]), np.pi)
        bins = ((angle / np.pi * 4 + 0.5).astype(int)) % 4
        hist = np.bincount(bins, weights=magnitude[strong], minlength=4) / magnitude[strong].sum()
        axes = [float(hist[0]), float(hist[1] + hist[3]), float(hist[2])]
    else:
        axes = [1 / 3, 1 / 3, 1 / 3]
    darker = (lightness / np.maximum(cv2.dilate(lightness, np.ones((7, 7), np.uint8)), 1.0))[inner]
    inside_l, inside_c = lightness[inner], chroma[inner]
    median_l = float(np.median(inside_l))
    blob = cv2.Laplacian(cv2.GaussianBlur(log_l, (0, 0), 1.5), cv2.CV_32F, ksize=3)[inner]
    local = cv2.medianBlur(np.clip(lightness, 0, 100).astype(np.uint8), 7).astype(np.float32)
    above = (lightness - local)[inner]
    pattern = [
        float((magnitude > 0.05).mean()),
        float((magnitude > 0.1).mean()),
        float((magnitude > 0.2).mean()),
        coherence,
        corners,
        math.log1p(float(energy.mean()) * 100),
        float((darker < 0.75).mean()),
        float((darker < 0.6).mean()),
        float(np.percentile(inside_l, 99) - median_l),
        float(((inside_l > median_l + 15) & (inside_c < np.median(inside_c) * 0.6 + 1)).mean()),
        float(np.percentile(blob, 95)),
        float(np.percentile(blob, 5)),
        float(np.percentile(above, 99)),
        float((above > 8).mean()),
        float(np.percentile(inside_l, 50) - np.percentile(inside_l, 10)),
        *axes,
    ]
    # a glossy highlight mixes in white: the pixel's min/max channel ratio rises above the body's
    rgb = frame[mask].astype(np.float32)
    whiteness = rgb.min(axis=1) / np.maximum(rgb.max(axis=1), 1.0)
    body = float(np.median(whiteness))
    all_l = lightness[mask]
    highlight = [
        float(np.percentile(whiteness, 99) - body),
        float((whiteness > body + 0.15).mean()),
        float(((whiteness > body + 0.1) & (all_l > np.median(all_l))).mean()),
        float(np.percentile(all_l, 99.5) - np.percentile(all_l, 90)),
    ]
    return pattern, highlight


def material_features(clip: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Statistics of the object's pixels over five frames: edges of pattern marks (density, structure
    tensor coherence and corners, orientation by image axis, local darkening, blob response) and, for
    a highlight that may show in only some frames, whitening and bright tails (mean and maximum)."""
    clip = _check_clip(clip)
    mask = _check_mask(mask, clip)
    picks = sorted({int(i) for i in np.linspace(0, clip.shape[0] - 1, _MATERIAL_FRAMES).round()})
    rows = [r for r in (_material_frame(clip[i], mask[i]) for i in picks) if r is not None]
    if not rows:
        return np.zeros(_MATERIAL_FEATURES)
    pattern = np.asarray([p for p, _ in rows], np.float64).mean(axis=0)
    highlight = np.asarray([h for _, h in rows], np.float64)
    return np.concatenate([pattern, highlight.mean(axis=0), highlight.max(axis=0)])


def material_family(material: str) -> str:
    """``plain`` for matte and glossy (at 128 px a highlight is often invisible: flat faces, white
    objects), else the pattern: what the material reader can be held to."""
    return "plain" if material in ("matte", "glossy") else material


def read_material(clip: np.ndarray, mask: np.ndarray | None = None) -> tuple[str, float]:
    """Surface material: ``(name, posterior confidence)``, from the object's pixels (mask estimated
    when ``None``)."""
    clip = _check_clip(clip)
    return _model("MATERIAL").predict(material_features(clip, _object_mask(clip, mask)))


# --------------------------------------------------------------------------------------------
# Style


def style_features(clip: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Style statistics, mean over three frames.

    Whole frame: blockiness on the pixel-style grid, mass of channel values on the posterize levels,
    edge sharpness, fine grain, darkest and brightest levels, colour count, Laplacian statistics. With a
    mask (estimated when ``None``), also the median Laplacian inside the object and in the background
    (paper grain shows there; smooth photo shading and flat posterize bands do not).
    """
    clip = _check_clip(clip)
    mask = _object_mask(clip, mask)
    t, h, w, _ = clip.shape
    unit = min(h, w)
    block = _pixel_block(unit)
    step = 255.0 / (_POSTERIZE_LEVELS - 1)
    grow = max(3, round(0.04 * unit))
    ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    feats = []
    for i in _sample_frames(t):
        frame = clip[i].astype(np.float32)
        gray = frame.mean(axis=2)
        dx = np.abs(np.diff(gray, axis=1))
        dy = np.abs(np.diff(gray, axis=0))
        on_x = (np.arange(1, w) % block) == 0
        on_y = (np.arange(1, h) % block) == 0
        inside = (dx[:, ~on_x].mean() + dy[~on_y, :].mean()) / 2
        across = (dx[:, on_x].mean() + dy[on_y, :].mean()) / 2
        blockiness = math.log((across + 0.5) / (inside + 0.5))
        dist = np.abs(frame - np.round(frame / step) * step)
        on_levels = float((dist <= 2.0).mean())
        near_levels = float((dist <= 6.0).mean())
        grad = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)) / 8.0
        sharp = float(np.percentile(grad, 99.5))
        smooth = cv2.GaussianBlur(gray, (0, 0), 1.0)
        grain_map = np.abs(gray - smooth)
        flat = grad < 2.0
        grain = float(grain_map[flat].mean()) if flat.sum() > 50 else float(grain_map.mean())
        low, high = np.percentile(gray, [0.5, 99.5])
        q = (clip[i] >> 3).astype(np.int32)
        colors = len(np.unique((q[..., 0] * 32 + q[..., 1]) * 32 + q[..., 2]))
        second = np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=1))
        m = mask[i].astype(np.uint8)
        core = cv2.erode(m, np.ones((5, 5), np.uint8)).astype(bool)
        away = ~cv2.dilate(m, ring).astype(bool)
        obj_lap = float(np.median(second[core])) if core.sum() > 20 else float(np.median(second))
        bg_lap = float(np.median(second[away])) if away.sum() > 20 else float(np.median(second))
        obj_levels = float((dist[core] <= 2.0).mean()) if core.sum() > 20 else on_levels
        feats.append(
            [
                blockiness,
                on_levels,
                near_levels,
                math.log1p(sharp),
                math.log1p(grain),
                float(low),
                float(high),
                math.log(colors),
                math.log1p(float(second.mean())),
                float((second < 0.5).mean()),
                math.log1p(obj_lap),
                math.log1p(bg_lap),
                obj_levels,
            ]
        )
    return np.asarray(feats, np.float64).mean(axis=0)


def read_style(clip: np.ndarray, mask: np.ndarray | None = None) -> tuple[str, float]:
    """Render style: ``(name, posterior confidence)``; the mask (estimated when ``None``) separates
    object and background statistics."""
    clip = _check_clip(clip)
    return _model("STYLE").predict(style_features(clip, _object_mask(clip, mask)))


# --------------------------------------------------------------------------------------------
# Fitting (run once; the result is written to _reader_models.py)


def fit_reader_models(
    samples: list[tuple[np.ndarray, np.ndarray, dict[str, str]]],
    min_std: dict[str, float] | None = None,
    only: tuple[str, ...] | None = None,
) -> dict[str, dict[str, list]]:
    """Per-class feature means and standard deviations for the shape, background, style and material
    readers.

    Args:
        samples: ``(clip, mask, labels)`` with labels ``{"shape": ..., "background": ..., "style": ...,
            "material": ...}`` and optionally ``"mode"`` (for example ``"clean"`` / ``"degraded"``): each
            class gets one Gaussian per mode, and a prediction sums the posterior over a class's modes.
            The material reader's modes are also split by style (a watercolour wash or pixel blocks
            change how a pattern looks more than the pattern changes between classes).
        min_std: floor of each model's standard deviations, relative to the feature's overall spread.
        only: the models to fit (``"SHAPE"``, ``"BACKGROUND"``, ``"STYLE"``, ``"MATERIAL"``); all by
            default. Refitting one reader leaves the others' constants as they are.

    Returns:
        ``{"SHAPE": {"classes", "mean", "std"}, ...}`` as plain lists.
    """
    floors = {"SHAPE": 0.05, "BACKGROUND": 0.05, "STYLE": 0.05, "MATERIAL": 0.05, **(min_std or {})}
    specs: dict[str, tuple[str, tuple[str, ...], Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
        "SHAPE": ("shape", SHAPES, lambda clip, mask: shape_features(mask)),
        "BACKGROUND": ("background", BACKGROUNDS, background_features),
        "STYLE": ("style", STYLES, style_features),
        "MATERIAL": ("material", MATERIALS, material_features),
    }
    unknown = set(only or ()) - set(specs)
    if unknown:
        raise InputError(f"fit_reader_models: no reader model {sorted(unknown)}; choose from {sorted(specs)}")
    models = {}
    for name, (key, classes, features) in specs.items():
        if only is not None and name not in only:
            continue
        modes = np.asarray(
            [
                labels.get("mode", "") + (f"/{labels['style']}" if name == "MATERIAL" else "")
                for _, _, labels in samples
            ]
        )
        x = np.asarray([features(clip, mask) for clip, mask, _ in samples])
        y = np.asarray([labels[key] for _, _, labels in samples])
        spread = x.std(axis=0) + 1e-6
        rows, mean, std = [], [], []
        for cls in classes:
            for mode in sorted(set(modes)):
                group = x[(y == cls) & (modes == mode)]
                if len(group) < 2:
                    raise InputError(
                        f"fit_reader_models needs at least 2 samples of {key} {cls!r} "
                        f"(mode {mode!r}), got {len(group)}"
                    )
                rows.append(cls)
                mean.append(group.mean(axis=0))
                std.append(np.maximum(group.std(axis=0), floors[name] * spread))
        models[name] = {
            "classes": rows,
            "mean": np.asarray(mean).round(6).tolist(),
            "std": np.asarray(std).round(6).tolist(),
        }
    return models


# The attributes a ShapeWorld prompt names that text-to-video is scored on, with their readers (the
# distill monitor and benchmarks/toy_quality.py read generations through this one mapping).
PROMPT_READERS: dict[str, Callable[..., tuple[str, float]]] = {
    "color": read_color,
    "shape": read_shape,
    "background": read_background,
}
