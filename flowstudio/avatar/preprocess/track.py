"""Step 3b: follow one face through a shot, smooth its crop over time, and cut square crops.

Tracking is by overlap: the track starts on the largest face of the first frame with one and then
takes, in each frame, the face that overlaps the last tracked box most (IoU >= ``min_iou``); a frame
where none does counts as "no face" (another person, or a detector miss). Gaps of up to ``max_gap``
frames are bridged by linear interpolation of the box; a longer gap ends the face run.

The crop is a square of side ``crop_scale x`` the box's larger side around the box centre; centre and
side are Gaussian-smoothed over time (``smooth_sigma`` frames) so the crop does not jitter with the
detector. There is no in-plane rotation: head roll stays in the video, where the structure latent
(pose) is meant to describe it. Pixels outside the frame repeat the border.
"""

from __future__ import annotations

import cv2
import numpy as np

from flowstudio.avatar.preprocess.detect import Box


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def track_boxes(detections: list[list[Box]], *, min_iou: float = 0.3) -> np.ndarray:
    """Per-frame detections -> the tracked box ``(T, 4)`` (x0, y0, x1, y1), NaN where there is none."""
    track = np.full((len(detections), 4), np.nan)
    last: np.ndarray | None = None
    for t, boxes in enumerate(detections):
        if not boxes:
            continue
        if last is None:
            chosen = max(boxes, key=lambda b: b.area).as_array()
        else:
            scored = [(iou(last, b.as_array()), b) for b in boxes]
            best, box = max(scored, key=lambda s: s[0])
            if best < min_iou:
                continue
            chosen = box.as_array()
        track[t] = last = chosen
    return track


def fill_gaps(track: np.ndarray, max_gap: int) -> np.ndarray:
    """Interpolate runs of at most ``max_gap`` missing frames that have a face on both sides."""
    out = track.copy()
    present = ~np.isnan(track[:, 0])
    index = np.flatnonzero(present)
    for a, b in zip(index[:-1], index[1:], strict=True):
        if 1 < b - a <= max_gap + 1:
            w = (np.arange(a + 1, b) - a) / (b - a)
            out[a + 1 : b] = track[a] * (1 - w[:, None]) + track[b] * w[:, None]
    return out


def face_runs(track: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` frame ranges where the track has a box."""
    present = np.concatenate([[False], ~np.isnan(track[:, 0]), [False]])
    edges = np.flatnonzero(np.diff(present.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0 or len(values) < 2:
        return values
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, ((radius, radius), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(values.shape[1])], 1)


def crop_windows(boxes: np.ndarray, *, crop_scale: float, smooth_sigma: float) -> np.ndarray:
    """Boxes ``(T, 4)`` of one face run -> smoothed square crops ``(T, 3)``: centre x, centre y, side."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = crop_scale * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return _smooth(np.concatenate([centre, side[:, None]], axis=1), smooth_sigma)


def crop_frames(frames: np.ndarray, windows: np.ndarray, size: int) -> np.ndarray:
    """Cut and resize the square ``windows`` (centre x, centre y, side) of ``frames`` to ``size``."""
    out = np.empty((len(frames), size, size, 3), np.uint8)
    height, width = frames.shape[1:3]
    for t, (frame, (cx, cy, side)) in enumerate(zip(frames, windows, strict=True)):
        s = max(2, int(round(side)))
        x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
        pad = max(0, -x0, -y0, x0 + s - width, y0 + s - height)
        source = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else frame
        window = source[y0 + pad : y0 + pad + s, x0 + pad : x0 + pad + s]
        # INTER_AREA when shrinking (no aliasing from a 400 px face to 128), bilinear when enlarging
        interpolation = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
        out[t] = cv2.resize(window, (size, size), interpolation=interpolation)
    return out
