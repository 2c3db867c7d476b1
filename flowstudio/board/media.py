"""Pictures for the per-case viewer: a clip as a filmstrip PNG (a few frames side by side).

A filmstrip needs no video codec in the browser (Debian's chromium plays no H.264) and shows motion
and edits at a glance. Each strip is rendered once into ``<data>/cache/`` (named after what it shows)
and served from there.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

#: Frames shown per strip: first, last and evenly spaced ones between.
STRIP_FRAMES = 5
GAP = 2


def filmstrip(frames: np.ndarray, count: int = STRIP_FRAMES) -> np.ndarray:
    """uint8 ``(H, count*W + gaps, 3)``: ``count`` evenly spaced frames of ``(T, H, W, 3)`` in a row."""
    picks = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    height, width = frames.shape[1:3]
    strip = np.full((height, len(picks) * (width + GAP) - GAP, 3), 255, np.uint8)
    for slot, index in enumerate(picks):
        x = slot * (width + GAP)
        strip[:, x : x + width] = frames[index]
    return strip


def mask_frames(mask: np.ndarray) -> np.ndarray:
    """A bool ``(T, H, W)`` mask as white-on-black uint8 frames."""
    return np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=-1)


def cached_png(cache: Path, key: str, render: object) -> Path:
    """``cache/<key>.png``, rendered by ``render() -> frames`` when absent (written atomically)."""
    from PIL import Image

    path = cache / f"{key}.png"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # one per writer: threads share a pid
        Image.fromarray(filmstrip(render())).save(tmp, format="PNG")  # type: ignore[operator]
        os.replace(tmp, path)
    return path
