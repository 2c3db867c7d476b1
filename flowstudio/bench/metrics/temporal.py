"""Temporal metrics from OpenCV optical flow: warp error, flicker, motion fidelity.

Optical flow is OpenCV's DIS (Kroeger et al., "Fast Optical Flow using Dense Inverse Search",
ECCV 2016), preset ``FAST``, on the grey frames. ``flow[t]`` maps frame ``t`` to frame ``t + 1``:
pixel ``x`` of frame ``t`` is seen at ``x + flow[t](x)`` in frame ``t + 1``.

* Warp error (Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018): frame ``t + 1``
  is warped back onto frame ``t`` along the flow, and the mean absolute RGB difference is taken over
  the pixels that the forward-backward check keeps (``|f + b(x + f)|^2 < 0.01 (|f|^2 + |b|^2) + 0.5``,
  occlusions and flow failures removed) and that land inside the frame; averaged over frame pairs,
  in 8-bit levels (0..255). Lower is smoother.
* Flicker: the absolute difference of the mean luma (0.299 R + 0.587 G + 0.114 B) of frame ``t``
  and of warped frame ``t + 1`` over the same pixels, averaged over frame pairs, in 8-bit levels:
  a global brightness change that motion does not explain.
* Motion fidelity: mean end-point error (pixels) between the flow of the source clip and the flow of
  the edited clip, optionally over a region (FiVE-Bench and V2VBench measure motion fidelity with
  tracked points; dense flow is the weight-free version). Lower keeps the motion better.
"""

from __future__ import annotations

import cv2
import numpy as np


def _dis() -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)


def _grey(frames: np.ndarray) -> list[np.ndarray]:
    return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]


def optical_flow(frames: np.ndarray, *, backward: bool = False) -> np.ndarray:
    """Flow between consecutive frames of uint8 ``(T, H, W, 3)``: float32 ``(T - 1, H, W, 2)`` as (dx, dy).

    With ``backward=True`` returns ``flow[t]`` from frame ``t + 1`` to frame ``t`` instead.
    """
    grey = _grey(frames)
    dis = _dis()
    pairs = [(grey[t + 1], grey[t]) if backward else (grey[t], grey[t + 1]) for t in range(len(grey) - 1)]
    out = np.empty((len(pairs), *frames.shape[1:3], 2), np.float32)
    for t, (a, b) in enumerate(pairs):  # straight into one array: np.stack would copy every field again
        out[t] = dis.calc(a, b, None)
    return out


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def warp_back(frame: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``frame`` (the later frame) at ``x + flow(x)``: it lands on the earlier frame's grid."""
    gx, gy = _grid(*flow.shape[:2])
    return cv2.remap(
        frame, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _consistent(forward: np.ndarray, back: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Forward-backward check on ``back`` already sampled at ``(tx, ty)``, and targets inside the frame.

    Written per flow component: numpy's ``sum(-1)`` over a length-2 axis is ``v[..., 0] + v[..., 1]``
    in that order (so the same bits), but runs several times slower than the two-term sum.
    """
    height, width = forward.shape[:2]
    fx, fy = forward[..., 0], forward[..., 1]
    bx, by = back[..., 0], back[..., 1]
    sx, sy = fx + bx, fy + by
    err = sx * sx
    err += sy * sy
    scale = fx * fx
    scale += fy * fy
    scale += bx * bx + by * by
    scale *= 0.01
    scale += 0.5
    inside = (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)
    return (err < scale) & inside


def valid_pixels(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Forward-backward consistent pixels whose target is inside the frame: bool ``(H, W)``."""
    gx, gy = _grid(*forward.shape[:2])
    tx, ty = gx + forward[..., 0], gy + forward[..., 1]
    back = cv2.remap(backward, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return _consistent(forward, back, tx, ty)


def warp_stats(
    frames: np.ndarray, flow: np.ndarray | None = None, back_flow: np.ndarray | None = None
) -> dict[str, float | None]:
    """Warp error and flicker of a uint8 clip ``(T, H, W, 3)`` (8-bit levels; ``None`` below 2 frames).

    ``flow`` / ``back_flow`` may be passed when already computed (:func:`optical_flow`).
    """
    if frames.shape[0] < 2:
        return {"warp_error": None, "flicker": None}
    flow = optical_flow(frames) if flow is None else flow
    back_flow = optical_flow(frames, backward=True) if back_flow is None else back_flow
    return warp_summary(*warp_pairs(frames, flow, back_flow))


def warp_pairs(
    frames: np.ndarray, flow: np.ndarray, back_flow: np.ndarray
) -> tuple[list[float], list[float]]:
    """Warp error and flicker of every frame pair ``(t, t + 1)`` of ``frames`` with a consistent pixel.

    ``flow`` / ``back_flow`` hold the pairs' flows (``len(frames) - 1`` of each). Pairs are independent:
    the lists of consecutive chunks of a clip (overlapping by one frame) concatenate to the clip's.
    """
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
        absdiff = cv2.absdiff(warped, current)
        diff = absdiff[..., 0] + absdiff[..., 1]  # sum(-1) over RGB, in its order, without its slow loop
        diff += absdiff[..., 2]
        errors.append(float((diff * weight).sum(dtype=np.float64)) / (3 * count))
        luma = cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY) - cv2.cvtColor(current, cv2.COLOR_RGB2GRAY)
        flickers.append(abs(float((luma * weight).sum(dtype=np.float64)) / count))
    return errors, flickers


def warp_summary(errors: list[float], flickers: list[float]) -> dict[str, float | None]:
    """Means of :func:`warp_pairs`' lists (``None`` when no pair had a consistent pixel)."""
    if not errors:
        return {"warp_error": None, "flicker": None}
    return {"warp_error": float(np.mean(errors)), "flicker": float(np.mean(flickers))}


def warp_error(frames: np.ndarray) -> float | None:
    """Mean motion-compensated absolute difference of consecutive frames, 8-bit levels (see module doc)."""
    return warp_stats(frames)["warp_error"]


def flicker(frames: np.ndarray) -> float | None:
    """Mean motion-compensated change of mean luma between consecutive frames, 8-bit levels."""
    return warp_stats(frames)["flicker"]


def motion_epe(
    source_flow: np.ndarray, edit_flow: np.ndarray, region: np.ndarray | None = None
) -> float | None:
    """Mean end-point error (pixels) between flow fields ``(T - 1, H, W, 2)``; ``region`` is ``(T, H, W)``.

    The region of frame ``t`` selects the pixels of ``flow[t]``.
    """
    if source_flow.shape != edit_flow.shape:
        raise ValueError(f"flow shapes differ: {source_flow.shape} vs {edit_flow.shape}")
    if source_flow.shape[0] == 0:
        return None
    epe = np.empty(source_flow.shape[:3], np.result_type(source_flow, edit_flow))
    for t in range(source_flow.shape[0]):  # frame by frame: the temporaries stay in the CPU cache
        diff = source_flow[t] - edit_flow[t]
        dx, dy = diff[..., 0], diff[..., 1]
        squared = dx * dx
        squared += dy * dy  # (diff ** 2).sum(-1) in its order, without the slow length-2 reduction
        np.sqrt(squared, out=epe[t])
    if region is None:
        return float(epe.mean())
    keep = region[:-1]
    return float(epe[keep].mean()) if keep.any() else None


def motion_fidelity(source: np.ndarray, edited: np.ndarray, region: np.ndarray | None = None) -> float | None:
    """End-point error between the flows of the source and the edited clip (pixels; lower is better)."""
    return motion_epe(optical_flow(source), optical_flow(edited), region)
