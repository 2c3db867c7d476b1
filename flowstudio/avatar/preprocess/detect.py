"""Step 3a: face detectors behind one interface, offline.

``detector.detect(frames, source_indices) -> list[list[Box]]``: every face found in each frame, in
the pixel coordinates of ``frames`` (``source_indices`` are the input video's frame numbers, which
only the TalkingShapes detector needs).

* :class:`MediapipeDetector` (``--detector mediapipe``, the default, for real faces) - MediaPipe's
  BlazeFace, whose model ships inside the ``mediapipe`` wheel (the ``face`` extra, ``mediapipe==0.10.14``):
  nothing is downloaded. It also finds the TalkingShapes cartoon heads (30 of 30 sampled frames at
  128 and 256 px, box within ~5 px of the world's true face box; docs/guide_avatar.md).
* :class:`TalkingShapesDetector` (``--detector talkingshapes``) - NOT a detector: it reads the
  toy world's ground-truth face box (the projected structure keypoints of ``clip_XXXXX.npz``). It
  exists so the toy path runs where mediapipe is not installed (``make test``), and is named so
  that nobody mistakes it for detection. It refuses files without that ground truth.

OpenCV's Haar cascades are not an option here: OpenCV 5 (``opencv-python-headless`` 5.0, which the
project uses) no longer ships ``CascadeClassifier`` nor ``cv2.data.haarcascades``' XML files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from flowstudio.errors import InputError

MEDIAPIPE_HINT = (
    "install the face extra (`pip install -e '.[face]'`: mediapipe==0.10.14, which bundles its models), "
    "or for TalkingShapes clips pass --detector talkingshapes (the world's ground-truth box)"
)


@dataclass(frozen=True)
class Box:
    """A face box in pixels: corners ``(x0, y0)``-``(x1, y1)`` and the detector's score."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    def as_array(self) -> np.ndarray:
        return np.array([self.x0, self.y0, self.x1, self.y1], np.float64)


class FaceDetector(Protocol):
    name: str

    def detect(self, frames: np.ndarray, source_indices: np.ndarray) -> list[list[Box]]: ...


class MediapipeDetector:
    """MediaPipe BlazeFace (``model_selection`` 0: faces within ~2 m, 1: full range)."""

    name = "mediapipe"

    def __init__(self, min_confidence: float = 0.5, model_selection: int = 0) -> None:
        try:
            import mediapipe as mp
        except ImportError as err:
            raise InputError(f"--detector mediapipe needs the mediapipe package: {MEDIAPIPE_HINT}") from err
        self._solution = mp.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=min_confidence
        )

    def detect(self, frames: np.ndarray, source_indices: np.ndarray) -> list[list[Box]]:
        height, width = frames.shape[1:3]
        out: list[list[Box]] = []
        for frame in frames:
            result = self._solution.process(np.ascontiguousarray(frame))
            boxes = []
            for detection in result.detections or []:
                r = detection.location_data.relative_bounding_box
                boxes.append(
                    Box(
                        r.xmin * width,
                        r.ymin * height,
                        (r.xmin + r.width) * width,
                        (r.ymin + r.height) * height,
                        float(detection.score[0]),
                    )
                )
            out.append(boxes)
        return out


class TalkingShapesDetector:
    """The TalkingShapes world's ground-truth face box (toy only; see the module docstring)."""

    name = "talkingshapes"

    def __init__(self, video: Path, source_size: tuple[int, int]) -> None:
        from flowstudio.worlds.faces import StructureLatent, project_keypoints

        arrays = video.with_suffix(".npz")
        if not arrays.is_file():
            raise InputError(
                f"{video}: --detector talkingshapes reads the world's ground truth from "
                f"{arrays.name}, which is missing; it works only on TalkingShapes datasets "
                "(`flowstudio worlds make faces`). Use --detector mediapipe for other videos"
            )
        with np.load(arrays) as data:
            if "structure" not in data.files:
                raise InputError(f"{arrays}: has no 'structure' array; not a TalkingShapes clip")
            structure = data["structure"]
        height, width = source_size
        points = project_keypoints(StructureLatent.from_array(structure), height, width)  # (T, K, 2)
        self._boxes = np.concatenate([points.min(axis=1), points.max(axis=1)], axis=1)  # (T, 4)
        self._source_size = source_size

    def detect(self, frames: np.ndarray, source_indices: np.ndarray) -> list[list[Box]]:
        scale_y = frames.shape[1] / self._source_size[0]
        scale_x = frames.shape[2] / self._source_size[1]
        out: list[list[Box]] = []
        for index in source_indices:
            if not 0 <= index < len(self._boxes):
                out.append([])  # more frames than ground truth: no box rather than a made-up one
                continue
            x0, y0, x1, y1 = self._boxes[index]
            out.append([Box(x0 * scale_x, y0 * scale_y, x1 * scale_x, y1 * scale_y)])
        return out


def make_detector(name: str, video: Path, source_size: tuple[int, int]) -> FaceDetector:
    """The detector ``name`` for one input video (TalkingShapes' needs the video's ground truth)."""
    if name == "mediapipe":
        return _cached_mediapipe()
    if name == "talkingshapes":
        return TalkingShapesDetector(video, source_size)
    raise InputError(f"unknown detector {name!r}; use mediapipe or talkingshapes")


_MEDIAPIPE: MediapipeDetector | None = None


def _cached_mediapipe() -> MediapipeDetector:
    # One graph per worker process: building it costs ~0.1 s, a clip's detection a few ms per frame.
    global _MEDIAPIPE
    if _MEDIAPIPE is None:
        _MEDIAPIPE = MediapipeDetector()
    return _MEDIAPIPE
