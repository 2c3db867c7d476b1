"""The offline editing metrics as they were before the speed work of issue 16 (item 4), frozen.

This is the oracle the fast implementations are tested against (``tests/test_metric_speed.py``) and
the "before" of ``benchmarks/metric_speed.py``: plain numpy over whole clips, one metric at a time,
nothing shared between metrics except what the library cached then (the output's forward flow, the
ground-truth SSIM maps and squared error). Do not optimise or fix this file: its job is to stay the
old numbers. Functions that the speed work did not touch (PSNR, region means, the attribute reader)
are imported from their modules rather than copied.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from flowstudio.bench.metrics.attributes import attribute_accuracy
from flowstudio.bench.metrics.pixel import (
    _C1,
    _C2,
    _KERNEL,
    SSIM_BORDER,
    psnr,
    psnr_from_error,
    region_mean,
    squared_error_map,
)

# --- colour (flowstudio.bench.metrics.color before issue 16) ---------------------------------------

_SRGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_M = (_SRGB_TO_XYZ / _WHITE_D65[:, None]).T.astype(np.float32)


def _linear_lut() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92).astype(np.float32)


_LINEAR = _linear_lut()


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        channels = [_LINEAR[rgb[..., i]] for i in range(3)]
    else:
        c = np.asarray(rgb, np.float32)
        linear = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92).astype(np.float32)
        channels = [linear[..., i] for i in range(3)]
    f = []
    for j in range(3):
        v = channels[0] * _M[0, j] + channels[1] * _M[1, j] + channels[2] * _M[2, j]
        root = np.power(np.maximum(v, 0.0), np.float32(1.0 / 3.0))
        small = v <= 0.008856
        if small.any():
            root[small] = 7.787 * v[small] + 16.0 / 116.0
        f.append(root)
    lab = np.empty((*f[0].shape, 3), np.float32)
    lab[..., 0] = 116.0 * f[1] - 16.0
    lab[..., 1] = 500.0 * (f[0] - f[1])
    lab[..., 2] = 200.0 * (f[1] - f[2])
    return lab


_COS30, _SIN30 = math.cos(math.radians(30.0)), math.sin(math.radians(30.0))
_COS6, _SIN6 = math.cos(math.radians(6.0)), math.sin(math.radians(6.0))
_COS63, _SIN63 = math.cos(math.radians(63.0)), math.sin(math.radians(63.0))
_H275, _INV25, _DEG30 = math.radians(275.0), 1.0 / math.radians(25.0), math.radians(30.0)
_25_7 = 25.0**7


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    dtype = np.result_type(lab1, lab2, np.float32)
    lab1 = np.asarray(lab1, dtype)
    lab2 = np.asarray(lab2, dtype)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar = (np.sqrt(a1 * a1 + b1 * b1) + np.sqrt(a2 * a2 + b2 * b2)) * 0.5
    c2 = c_bar * c_bar
    c7 = c2 * c2 * c2 * c_bar
    g1 = 1.5 - 0.5 * np.sqrt(c7 / (c7 + _25_7))
    a1p, a2p = g1 * a1, g1 * a2
    c1p = np.sqrt(a1p * a1p + b1 * b1)
    c2p = np.sqrt(a2p * a2p + b2 * b2)
    two_pi = 2 * np.pi
    h1p = np.arctan2(b1, a1p) % two_pi
    h2p = np.arctan2(b2, a2p) % two_pi
    prod = c1p * c2p
    chroma0 = prod == 0
    dh = h2p - h1p
    dh = np.where(dh > np.pi, dh - two_pi, np.where(dh < -np.pi, dh + two_pi, dh))
    dh[chroma0] = 0.0
    d_l = L2 - L1
    d_c = c2p - c1p
    d_h = 2.0 * np.sqrt(prod) * np.sin(dh * 0.5)
    l_bar = (L1 + L2) * 0.5
    c_barp = (c1p + c2p) * 0.5
    h_sum = h1p + h2p
    far = np.abs(h1p - h2p) > np.pi
    h_bar = np.where(far, np.where(h_sum < two_pi, h_sum + two_pi, h_sum - two_pi), h_sum) * 0.5
    h_bar = np.where(chroma0, h_sum, h_bar)
    ch, sh = np.cos(h_bar), np.sin(h_bar)
    c2h = 2 * ch * ch - 1
    s2h = 2 * sh * ch
    c3h = ch * (4 * ch * ch - 3)
    s3h = sh * (3 - 4 * sh * sh)
    c4h = 2 * c2h * c2h - 1
    s4h = 2 * s2h * c2h
    t = (
        1.0
        - 0.17 * (ch * _COS30 + sh * _SIN30)
        + 0.24 * c2h
        + 0.32 * (c3h * _COS6 - s3h * _SIN6)
        - 0.20 * (c4h * _COS63 + s4h * _SIN63)
    )
    hd = (h_bar - _H275) * _INV25
    d_theta = _DEG30 * np.exp(-hd * hd)
    cp2 = c_barp * c_barp
    cp7 = cp2 * cp2 * cp2 * c_barp
    r_c = 2.0 * np.sqrt(cp7 / (cp7 + _25_7))
    l50 = (l_bar - 50.0) ** 2
    s_l = 1.0 + 0.015 * l50 / np.sqrt(20.0 + l50)
    s_c = 1.0 + 0.045 * c_barp
    s_h = 1.0 + 0.015 * c_barp * t
    r_t = -np.sin(2.0 * d_theta) * r_c
    tl, tc, th = d_l / s_l, d_c / s_c, d_h / s_h
    return np.sqrt(np.maximum(tl * tl + tc * tc + th * th + r_t * tc * th, 0.0)).astype(dtype, copy=False)


def delta_e_map(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    out = np.zeros(a.shape[:-1], np.float32)
    todo = (a[..., 0] != b[..., 0]) | (a[..., 1] != b[..., 1]) | (a[..., 2] != b[..., 2])
    if region is not None:
        todo &= region
    if todo.any():
        out[todo] = ciede2000(rgb_to_lab(a[todo]), rgb_to_lab(b[todo]))
    return out


def delta_e_clip(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float | None:
    return region_mean(delta_e_map(a, b, region), region)


# --- SSIM (flowstudio.bench.metrics.pixel before issue 16) -----------------------------------------


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = a.astype(np.float32)
    y = b.astype(np.float32)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(image, -1, _KERNEL, _KERNEL, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    num = (2 * mx * my + _C1) * (2 * sxy + _C2)
    den = (mx * mx + my * my + _C1) * (sxx + syy + _C2)
    ratio = num / den
    return (ratio[..., 0] + ratio[..., 1] + ratio[..., 2]) * np.float32(1.0 / 3.0)


def ssim_maps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.stack([ssim_map(x, y) for x, y in zip(a, b, strict=True)])


def erode(region: np.ndarray, radius: int) -> np.ndarray:
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    out = region.copy()
    for i, frame in enumerate(region):
        eroded = cv2.erode(frame.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)
        if eroded.any():
            out[i] = eroded
    return out


# --- temporal (flowstudio.bench.metrics.temporal before issue 16) ----------------------------------


def optical_flow(frames: np.ndarray, *, backward: bool = False) -> np.ndarray:
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    pairs = [(grey[t + 1], grey[t]) if backward else (grey[t], grey[t + 1]) for t in range(len(grey) - 1)]
    if not pairs:
        return np.zeros((0, *frames.shape[1:3], 2), np.float32)
    return np.stack([dis.calc(a, b, None) for a, b in pairs])


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def _consistent(forward: np.ndarray, back: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    height, width = forward.shape[:2]
    total = forward + back
    err = (total * total).sum(-1)
    scale = (forward * forward).sum(-1) + (back * back).sum(-1)
    inside = (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)
    return (err < 0.01 * scale + 0.5) & inside


def warp_stats(frames: np.ndarray, flow: np.ndarray, back_flow: np.ndarray) -> dict[str, float | None]:
    if frames.shape[0] < 2:
        return {"warp_error": None, "flicker": None}
    gx, gy = _grid(*frames.shape[1:3])
    errors: list[float] = []
    flickers: list[float] = []
    for t in range(frames.shape[0] - 1):
        tx, ty = gx + flow[t][..., 0], gy + flow[t][..., 1]
        back = cv2.remap(back_flow[t], tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        valid = _consistent(flow[t], back, tx, ty)
        count = int(np.count_nonzero(valid))
        if not count:
            continue
        later = frames[t + 1].astype(np.float32)
        current = frames[t].astype(np.float32)
        warped = cv2.remap(later, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        weight = valid.astype(np.float32)
        diff = cv2.absdiff(warped, current).sum(-1)
        errors.append(float((diff * weight).sum(dtype=np.float64)) / (3 * count))
        luma = cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY) - cv2.cvtColor(current, cv2.COLOR_RGB2GRAY)
        flickers.append(abs(float((luma * weight).sum(dtype=np.float64)) / count))
    if not errors:
        return {"warp_error": None, "flicker": None}
    return {"warp_error": float(np.mean(errors)), "flicker": float(np.mean(flickers))}


def motion_epe(source_flow: np.ndarray, edit_flow: np.ndarray) -> float | None:
    if source_flow.shape[0] == 0:
        return None
    epe = np.sqrt(((source_flow - edit_flow) ** 2).sum(-1))
    return float(epe.mean())


# --- the offline tier of one edit case, metric by metric as the library computed it -----------------


def score_offline(
    output: np.ndarray,
    source: np.ndarray,
    *,
    truth: np.ndarray | None = None,
    edit_region: np.ndarray | None = None,
    kept_region: np.ndarray | None = None,
    object_mask: np.ndarray | None = None,
    attributes: dict[str, Any] | None = None,
) -> dict[str, float | None]:
    """Every offline editing metric the old library computed for these inputs (``None``: skipped)."""
    out: dict[str, float | None] = {}
    if attributes is not None:
        result = attribute_accuracy(output, attributes, object_mask)
        out["attr_acc"] = float(result["value"]) if "value" in result else None
    if kept_region is not None:
        out["bg_psnr"] = psnr(output, source, kept_region)
        out["bg_ssim"] = region_mean(ssim_maps(output, source), erode(kept_region, SSIM_BORDER))
        out["bg_ciede2000"] = delta_e_clip(output, source, kept_region)
    if truth is not None:
        error, maps = squared_error_map(output, truth), ssim_maps(output, truth)
        out["gt_psnr"] = psnr_from_error(error)
        out["gt_ssim"] = region_mean(maps, None, border=SSIM_BORDER)
        if edit_region is not None:
            out["gt_psnr_edit"] = psnr_from_error(error, edit_region)
            out["gt_ssim_edit"] = region_mean(maps, edit_region)
            out["gt_ssim_outside"] = region_mean(maps, ~edit_region)
            out["color_fidelity"] = delta_e_clip(output, truth, edit_region)
    if output.shape[0] >= 2:
        flow = optical_flow(output)
        out.update(warp_stats(output, flow, optical_flow(output, backward=True)))
        out["motion_epe"] = motion_epe(optical_flow(source), flow)
    return out
