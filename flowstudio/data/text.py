"""Burnt-in text (subtitles, watermarks, price tags): a DB text-detection network from a local ONNX
file, run with OpenCV's dnn module.

DB ("Real-time Scene Text Detection with Differentiable Binarization", Liao et al., AAAI 2020) maps
an image to a per-pixel text probability. The networks OpenCV's model zoo and PaddleOCR publish
(``DB_TD500_resnet50.onnx``, ``DB_IC15_resnet18.onnx``, ``text_detection_en_ppocrv3_2023may.onnx``)
take a ``(1, 3, S, S)`` BGR image (mean 122.68 / 116.67 / 104.00 subtracted, scaled by 1/255; ``S`` a
multiple of 32) and return the ``(1, 1, S, S)`` map. The post-processing is DB's simplest form: pixels
above ``binary_threshold``, 8-connected regions, a region is text when its mean probability is at least
``box_threshold`` and it covers at least ``min_area`` of the frame. (OpenCV 5.0's own
``TextDetectionModel_DB`` fails on these 4-D outputs, so the map is read with ``cv2.dnn`` directly.)

A clip has burnt-in text when text is found on more than ``max_text_frames`` of 4 evenly spaced frames.
A model-free detector was tried first and dropped: it flagged 8 of 40 clean ShapeWorld clips (static
tiled and dotted backgrounds read as words). Without a ``text_model`` the filter does not run, and the
datasheet says so.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from flowstudio.errors import InputError

MEAN_BGR = (122.67891434, 116.66876762, 104.00698793)


def _onnx_file(path: str | Path) -> Path:
    file = Path(path)
    if file.is_dir():
        found = sorted(file.glob("*.onnx"))
        if len(found) != 1:
            raise InputError(f"text model folder {file} must hold exactly one .onnx file, found {len(found)}")
        file = found[0]
    if not file.is_file():
        raise InputError(
            f"text model {file} not found: give a DB text-detection .onnx file (see docs/guide_data.md)"
        )
    return file


class TextDetector:
    """A DB text-detection network (ONNX) and its post-processing."""

    def __init__(
        self,
        path: str | Path,
        *,
        input_size: int = 736,
        binary_threshold: float = 0.3,
        box_threshold: float = 0.6,
        min_area: float = 0.002,
    ) -> None:
        if input_size % 32:
            raise InputError(f"text_input_size must be a multiple of 32, got {input_size}")
        file = _onnx_file(path)
        try:
            self.net = cv2.dnn.readNetFromONNX(str(file))
        except cv2.error as err:
            raise InputError(f"cannot read the text model {file}: {err}") from err
        self.size, self.binary, self.box, self.min_area = (
            input_size,
            binary_threshold,
            box_threshold,
            min_area,
        )

    def probability(self, frame: np.ndarray) -> np.ndarray:
        """The text probability map ``(S, S)`` of an RGB uint8 frame."""
        blob = cv2.dnn.blobFromImage(
            cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR),
            1.0 / 255.0,
            (self.size, self.size),
            MEAN_BGR,
            swapRB=False,
        )
        self.net.setInput(blob)
        out = np.asarray(self.net.forward())
        if out.ndim != 4 or out.shape[:2] != (1, 1):
            raise InputError(f"the text model returned shape {out.shape}; a DB network returns (1, 1, S, S)")
        return out[0, 0]

    def regions(self, frame: np.ndarray) -> int:
        """How many text regions the frame holds."""
        probability = self.probability(frame)
        binary = (probability > self.binary).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        area = probability.size * self.min_area
        found = 0
        for label in range(1, count):
            if stats[label, cv2.CC_STAT_AREA] >= area and probability[labels == label].mean() >= self.box:
                found += 1
        return found

    def text_frames(self, clip: np.ndarray, frames: int = 4) -> float:
        """Fraction of ``frames`` evenly spaced frames of the clip that hold text."""
        picks = np.unique(np.linspace(0, len(clip) - 1, frames).round().astype(int))
        return float(np.mean([self.regions(clip[i]) > 0 for i in picks]))


@functools.lru_cache(maxsize=2)
def text_detector(path: str, input_size: int) -> TextDetector:
    """One :class:`TextDetector` per model and size in this process (a Ray worker loads it once)."""
    return TextDetector(path, input_size=input_size)
