"""The estimated object mask leaves out the soft halo a generated object is drawn with (on smooth
backgrounds), keeps it when asked (the background reader), and keeps an object that is all near the
background whole."""

from __future__ import annotations

import numpy as np

from flowstudio.worlds import readers

SIZE, FRAMES = 128, 5


def _scene(object_level: float, halo_level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grey plain backdrop (level 200) with a square object and a ring of halo around it."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    square = (abs(yy - 64) < 18) & (abs(xx - 64) < 18)
    around = (abs(yy - 64) < 30) & (abs(xx - 64) < 30) & ~square
    frame = np.full((SIZE, SIZE, 3), 200.0)
    frame[around] -= halo_level
    frame[square] = 200.0 - object_level
    clip = np.repeat(frame[None], FRAMES, axis=0).clip(0, 255).astype(np.uint8)
    return clip, np.repeat(square[None], FRAMES, 0), np.repeat((square | around)[None], FRAMES, 0)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_a_faint_halo_is_left_out_of_the_object_and_kept_for_the_background_reader():
    clip, square, with_halo = _scene(object_level=150, halo_level=30)
    assert _iou(readers.estimate_mask(clip), square) > 0.9
    assert _iou(readers.estimate_mask(clip, halo=True), with_halo) > 0.9
    # the square's silhouette reads as a box once the halo's rounded outline is gone
    assert readers.read_shape(mask=readers.estimate_mask(clip))[0] == "box"


def test_an_object_near_the_background_level_is_kept_whole():
    # no split: what stands out is one level (a pale object on a pale backdrop, no halo)
    clip, square, _ = _scene(object_level=40, halo_level=0)
    assert _iou(readers.estimate_mask(clip), square) > 0.9
    # a halo almost as strong as the object is not a halo: the split's ratio rule keeps both
    clip, _, with_halo = _scene(object_level=60, halo_level=40)
    assert _iou(readers.estimate_mask(clip), with_halo) > 0.9
