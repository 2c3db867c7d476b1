"""Shot cuts with PySceneDetect's ContentDetector, on the frames already decoded.

Used by ``flowstudio data build`` and step 2 of ``flowstudio avatar preprocess``. The detector is fed
the frames already decoded at the output rate (no second decode): a cut at output frame ``k`` means
frames ``< k`` and ``>= k`` belong to different shots. Callers drop shots too short for a training
clip, so a fade or a flash makes none.
``scenedetect-headless`` is used: plain ``scenedetect`` depends on the GUI ``opencv-python``, which
would overwrite the ``cv2`` of the ``opencv-python-headless`` the project already installs.
"""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np

from flowstudio.errors import InputError


def detect_cuts(
    frames: np.ndarray, fps: float, *, threshold: float = 27.0, min_shot_frames: int = 8
) -> list[int]:
    """Frame numbers where a new shot starts (not including 0)."""
    try:
        from scenedetect.common import FrameTimecode
        from scenedetect.detectors import ContentDetector
    except ImportError as err:
        raise InputError(
            "shot detection needs PySceneDetect: pip install -e '.[preprocess]' (scenedetect-headless)"
        ) from err
    rate = Fraction(fps).limit_denominator(1001)
    detector = ContentDetector(threshold=threshold, min_scene_len=min_shot_frames)
    cuts = []
    for index, frame in enumerate(frames):
        # ContentDetector works in OpenCV's BGR order (its HSV conversion assumes it)
        found = detector.process_frame(FrameTimecode(index, rate), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        cuts.extend(found)
    cuts.extend(detector.post_process(FrameTimecode(max(len(frames) - 1, 0), rate)))
    return sorted({int(c.frame_num) for c in cuts if 0 < int(c.frame_num) < len(frames)})


def shots(num_frames: int, cuts: list[int]) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` frame ranges between cuts."""
    edges = [0, *cuts, num_frames]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
