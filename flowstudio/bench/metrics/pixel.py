"""Pixel metrics on uint8 clips: PSNR and SSIM, whole-frame and restricted to a mask.

Clips are uint8 ``(T, H, W, 3)``; masks bool ``(T, H, W)``. Every metric is computed per frame and
averaged over the frames that have at least one pixel in the region (frames with an empty region
are left out; a region empty in every frame gives ``None``).

* PSNR: ``10 log10(255^2 / MSE)`` over the region's pixels and channels, capped at
  :data:`PSNR_CAP` dB (identical frames would give infinity, which JSON cannot carry).
* SSIM (Wang et al. 2004, IEEE TIP 13(4)): Gaussian window sigma 1.5 (11 taps), K1 = 0.01,
  K2 = 0.03, population covariances, reflect-padded borders, per RGB channel then averaged: the
  settings of ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)``. Whole-frame SSIM averages the SSIM map over the
  interior (5 pixels from the border), as scikit-image does; masked SSIM averages the map over the
  mask's pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

PSNR_CAP = 100.0
_SIGMA = 1.5
_TAPS = 11
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_KERNEL = cv2.getGaussianKernel(_TAPS, _SIGMA).astype(np.float32)
#: cv2.LUT's table of squares for 3 channels (exact in float32), and cv2.transform's channel sum.
_SQUARES3 = np.repeat((np.arange(256, dtype=np.float32) ** 2)[:, None], 3, axis=1).reshape(256, 1, 3)
_ONES3 = np.ones((1, 3), np.float32)


def region_mean(values: np.ndarray, region: np.ndarray | None = None, *, border: int = 0) -> float | None:
    """Mean over frames of the per-frame mean of ``values (T, H, W)`` over ``region (T, H, W)``.

    Frames whose region is empty are left out; ``None`` when every frame's region is empty. Without a
    region the mean runs over the interior ``border`` pixels away from the frame edge.
    """
    return mean_of_frames(frame_means(values, region, border=border))


def frame_means(
    values: np.ndarray, region: np.ndarray | None = None, *, border: int = 0
) -> list[float | None]:
    """The per-frame means :func:`region_mean` averages (``None`` for a frame whose region is empty).

    Each frame's mean depends on that frame alone, so the lists of consecutive chunks of a clip
    concatenate to the clip's (:mod:`~flowstudio.bench.metrics.parallel` reduces in its workers).
    """
    if region is None:
        inner = (
            values[:, border : values.shape[1] - border, border : values.shape[2] - border]
            if border
            else values
        )
        return [float(v) for v in inner.reshape(inner.shape[0], -1).mean(axis=1, dtype=np.float64)]
    return [
        float(v[m].mean(dtype=np.float64)) if m.any() else None for v, m in zip(values, region, strict=True)
    ]


def mean_of_frames(per_frame: list[float | None]) -> float | None:
    """Mean of the frames' values that are not ``None`` (``None`` when none is left)."""
    kept = [v for v in per_frame if v is not None]
    return float(np.mean(kept)) if kept else None


def squared_error_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel squared error averaged over RGB: float32 ``(T, H, W)`` (exact for uint8 inputs)."""
    if a.dtype == np.uint8 and b.dtype == np.uint8 and a.shape[-1] == 3 and a.size:
        # Squares by a float32 table, their sum by cv2.transform: every value is an integer below 2^24
        # (at most 3 * 255^2), so each step is exact in float32 whatever the order of the sum: the
        # numbers of the int32 sum converted to float32, in about two thirds of its time. Frame by
        # frame, into the result: the 12-byte-a-pixel squares stay in the CPU cache and in memory
        # already mapped, instead of a whole-clip temporary (~35% faster warm, more on fresh pages).
        out = np.empty(a.shape[:-1], np.float32)
        pixels = (a.shape[0], -1, 1, 3)
        for t, (x, y) in enumerate(zip(a.reshape(pixels), b.reshape(pixels), strict=True)):
            total = out[t].reshape(-1, 1)  # a view: cv2 writes the channel sums straight into the result
            cv2.transform(cv2.LUT(cv2.absdiff(x, y), _SQUARES3), _ONES3, dst=total)
            total *= np.float32(1.0 / 3.0)
        return out
    if a.dtype == np.uint8 and b.dtype == np.uint8:
        diff = cv2.absdiff(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])).reshape(a.shape)
        sq = diff.astype(np.int32)
        sq *= sq
        return (sq[..., 0] + sq[..., 1] + sq[..., 2]).astype(np.float32) * np.float32(1.0 / 3.0)
    diff = a.astype(np.float32) - b.astype(np.float32)
    return (diff * diff).mean(axis=-1)


def psnr_from_error(error: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """Mean over frames of the per-frame PSNR from a :func:`squared_error_map`, capped at :data:`PSNR_CAP`."""
    return mean_of_frames(frame_psnrs(error, region))


def frame_psnrs(error: np.ndarray, region: np.ndarray | None = None) -> list[float | None]:
    """The per-frame PSNRs :func:`psnr_from_error` averages (``None`` for a frame whose region is empty)."""
    values: list[float | None] = []
    for i in range(error.shape[0]):
        if region is not None and not region[i].any():
            values.append(None)
            continue
        mse = float(
            error[i].mean(dtype=np.float64) if region is None else error[i][region[i]].mean(dtype=np.float64)
        )
        values.append(
            PSNR_CAP if mse <= 255.0**2 * 10 ** (-PSNR_CAP / 10) else float(10 * np.log10(255.0**2 / mse))
        )
    return values


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """Mean over frames of the per-frame PSNR (dB, capped at :data:`PSNR_CAP`) of uint8 clips."""
    return psnr_from_error(squared_error_map(a, b), region)


def _blur(image: np.ndarray) -> np.ndarray:
    return cv2.sepFilter2D(image, -1, _KERNEL, _KERNEL, borderType=cv2.BORDER_REFLECT)


class _Moments:
    """Local mean and variance of one uint8 frame ``(H, W, 3)`` under the Gaussian window (float32).

    Computed once per frame and shared by every comparison of that frame (the output against the
    source and against the ground truth). ``x`` (the frame as float32) is dropped by :meth:`compact`
    when the moments are kept for later outputs (:func:`reference_moments`): it is re-made from the
    uint8 frame, the same bits, instead of holding 4 bytes a sample.
    """

    def __init__(self, frame: np.ndarray) -> None:
        self.x: np.ndarray | None = frame.astype(np.float32)
        self.mean = _blur(self.x)
        self.mean_sq = self.mean * self.mean
        self.var = _blur(self.x * self.x)
        self.var -= self.mean_sq

    def compact(self) -> _Moments:
        self.x = None
        return self


def reference_moments(clip: np.ndarray) -> list[_Moments]:
    """The SSIM moments of every frame of a reference clip (source or ground truth), without ``x``."""
    return [_Moments(frame).compact() for frame in clip]


def _ssim_from_moments(p: _Moments, q: _Moments, q_frame: np.ndarray | None = None) -> np.ndarray:
    """SSIM map averaged over channels, float32 ``(H, W)``: the arithmetic of Wang et al. in place.

    Every float32 operation and its order are those of the textbook expression
    ``(2 mx my + C1)(2 sxy + C2) / ((mx^2 + my^2 + C1)(sxx + syy + C2))`` (so the same bits), written
    with ``out=`` buffers: a fresh 5 MB temporary per operation at 480x832 costs more than the math.
    """
    qx = q.x if q.x is not None else q_frame.astype(np.float32)
    cov = _blur(p.x * qx)
    out = np.empty(cov.shape[:2], np.float32)
    # Strips of _ROWS rows: the temporaries stay in the CPU cache (elementwise, so the same bits; ~12%).
    for start in range(0, cov.shape[0], _ROWS):
        rows = slice(start, start + _ROWS)
        pm, qm = p.mean[rows], q.mean[rows]
        sxy = cov[rows]
        sxy -= pm * qm
        num = pm * 2  # 2 mx (multiplication commutes exactly)
        num *= qm
        num += _C1
        sxy *= 2
        sxy += _C2
        num *= sxy
        den = p.mean_sq[rows] + q.mean_sq[rows]
        den += _C1
        spread = p.var[rows] + q.var[rows]
        spread += _C2
        den *= spread
        num /= den
        part = out[rows]
        np.add(num[..., 0], num[..., 1], out=part)
        part += num[..., 2]
        part *= np.float32(1.0 / 3.0)
    return out


_ROWS = 16


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM map of two uint8 images ``(H, W, 3)``, averaged over channels: float32 ``(H, W)``."""
    return _ssim_from_moments(_Moments(a), _Moments(b))


def ssim_maps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM maps of two uint8 clips ``(T, H, W, 3)``: float32 ``(T, H, W)``."""
    return ssim_maps_against(a, {"b": b})["b"]


def ssim_maps_against(
    a: np.ndarray,
    references: dict[str, np.ndarray],
    moments: dict[str, list[_Moments]] | None = None,
) -> dict[str, np.ndarray]:
    """SSIM maps of clip ``a`` against each clip of ``references`` (same shape), by name.

    One pass over the frames; the moments of ``a``'s frame are computed once for all references.
    ``moments`` may give a reference's per-frame moments already computed (:func:`reference_moments`
    of that same clip): the same numbers, without recomputing them.
    """
    moments = moments or {}
    maps = {name: np.empty(a.shape[:3], np.float32) for name in references}
    for t, frame in enumerate(a):
        mine = _Moments(frame)
        for name, clip in references.items():
            theirs = moments[name][t] if name in moments else _Moments(clip[t])
            maps[name][t] = _ssim_from_moments(mine, theirs, clip[t])
    return maps


SSIM_BORDER = (_TAPS - 1) // 2


def ssim_from_maps(maps: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """SSIM from :func:`ssim_maps`: over ``region``, else over the interior (scikit-image's crop)."""
    return region_mean(maps, region, border=SSIM_BORDER)


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """Mean over frames of the per-frame SSIM of uint8 clips (in [-1, 1], 1 = identical)."""
    return ssim_from_maps(ssim_maps(a, b), region)
