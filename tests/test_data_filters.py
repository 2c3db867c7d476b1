"""The pair-dataset pipeline's clip filters (flowstudio.data.filters) on ShapeWorld renders: clean clips
pass, and each defect made on them is caught by its filter (a blur can also lower the measured motion)."""

from __future__ import annotations

import numpy as np
import pytest

from flowstudio.data.filters import FilterConfig, check_clip


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    from flowstudio.worlds.shapes import random_spec, render_clip

    rng = np.random.default_rng(0)
    return [render_clip(random_spec(rng)) for _ in range(12)]


def _blurred(clip):
    import cv2

    return np.stack([cv2.GaussianBlur(f, (0, 0), 3) for f in clip])


def _still(clip):
    return np.repeat(clip[:1], len(clip), axis=0)


def _faded(clip):
    out = clip.copy()
    out[-3:] = 0
    return out


def _padded(clip):
    out = clip.copy()
    out[1::2] = out[0::2][: len(out[1::2])]  # every other frame repeats the one before it
    return out


def test_clean_renders_pass_every_filter(clips):
    for clip in clips:
        measures, failed = check_clip(clip)
        assert failed == [], measures


@pytest.mark.parametrize(
    "defect, reason",
    [(_blurred, "blurry"), (_faded, "black_frames"), (_padded, "frozen_frames")],
)
def test_each_defect_is_caught_by_its_own_filter(clips, defect, reason):
    for clip in clips:
        measures, failed = check_clip(defect(clip))
        assert reason in failed, measures
        assert set(failed) <= {reason, "static"}, measures


def test_a_still_image_is_static_and_frozen(clips):
    for clip in clips:
        _, failed = check_clip(_still(clip))
        assert failed == ["frozen_frames", "static"]  # the most specific reason first


def test_thresholds_are_settings():
    assert check_clip(np.zeros((5, 32, 32, 3), np.uint8), FilterConfig(max_black_fraction=1.0))[1] == [
        "frozen_frames",
        "static",
        "blurry",
    ]
