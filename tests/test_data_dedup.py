"""Near-duplicate detection (flowstudio.data.dedup) on ShapeWorld clips."""

from __future__ import annotations

import numpy as np

from flowstudio.data.dedup import MAX_DISTANCE, distance, near_duplicates, signature


def _clips(count: int) -> list[np.ndarray]:
    from flowstudio.worlds.shapes import random_spec, render_clip

    rng = np.random.default_rng(3)
    return [render_clip(random_spec(rng)) for _ in range(count)]


def test_a_noisy_recoloured_copy_is_a_duplicate_and_other_clips_are_not():
    clips = _clips(10)
    rng = np.random.default_rng(0)
    copy = np.clip(clips[2].astype(np.float64) * 1.05 + rng.normal(0, 4, clips[2].shape), 0, 255).astype(
        np.uint8
    )
    signatures = [signature(c) for c in clips] + [signature(copy)]
    assert distance(signatures[2], signatures[-1]) <= MAX_DISTANCE / 2
    others = [distance(signatures[i], signatures[j]) for i in range(10) for j in range(i + 1, 10)]
    assert min(others) > 2 * MAX_DISTANCE
    assert near_duplicates(signatures) == {10: 2}
    assert near_duplicates(signatures[::-1]) == {8: 0}  # the first of a group is kept, in the order given
