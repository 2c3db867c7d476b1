"""What a run shows while it trains: TensorBoard scalars and images (main process only).

Event files go to ``logdir`` (``tensorboard --logdir <run folder>/tensorboard``); sample images are
also written as PNGs beside them, for a look without TensorBoard.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


class RunLog:
    """Scalars and images of one run; a no-op where ``logdir`` is ``None`` or not the main process."""

    def __init__(self, logdir: Path | None, enabled: bool = True) -> None:
        self.logdir = Path(logdir) if logdir is not None and enabled else None
        self._writer = None
        if self.logdir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency; a stripped environment still trains
                logger.warning("tensorboard is not installed: no event files in %s", self.logdir)
            else:
                self._writer = SummaryWriter(str(self.logdir))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self._writer is not None:
            for tag, value in values.items():
                self._writer.add_scalar(tag, value, step)

    def image(self, tag: str, step: int, image: np.ndarray | torch.Tensor) -> None:
        """``image``: ``(H, W, 3)`` uint8, or float in [0, 1]."""
        if self.logdir is None:
            return
        array = to_uint8(image)
        if self._writer is not None:
            self._writer.add_image(tag, array, step, dataformats="HWC")
        from PIL import Image

        png = self.logdir / "samples" / f"{tag.replace('/', '_')}-{step:07d}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(png)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def to_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return array


def image_grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tile ``rows`` of equally sized ``(H, W, 3)`` uint8 images into one image, ``pad`` pixels apart."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) - pad, cols * (w + pad) - pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            grid[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = tile
    return grid
