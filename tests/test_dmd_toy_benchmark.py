"""``benchmarks/dmd_toy.py``: the toy FD on pixel features, and the bars of its report."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # dmd_toy imports toy_quality as the benchmarks do
spec = importlib.util.spec_from_file_location("dmd_toy", BENCHMARKS / "dmd_toy.py")
dmd_toy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dmd_toy)


def _clips(seed: int, count: int, shift: float = 0.0) -> list[np.ndarray]:
    from flowstudio.worlds.shapes import random_spec, render_clip

    rng = np.random.default_rng(seed)
    clips = [render_clip(random_spec(rng)) for _ in range(count)]
    return [np.clip(c.astype(np.float64) + shift, 0, 255).astype(np.uint8) for c in clips]


def test_the_toy_fd_is_near_zero_for_the_same_world_and_grows_with_a_colour_cast():
    real = _clips(0, 40)
    same_world = dmd_toy.toy_fd(_clips(1, 40), real)
    tinted = dmd_toy.toy_fd(_clips(1, 40, shift=60.0), real)
    assert dmd_toy.toy_fd(real, real) < 1e-6
    assert tinted > 3 * same_world > 0


def test_pixel_features_are_five_frames_at_sixteen_pixels():
    clip = np.zeros((17, 128, 128, 3), np.uint8)
    clip[4, :64] = 255
    features = dmd_toy.pixel_features(clip)
    assert features.shape == (5 * 16 * 16 * 3,)
    per_frame = features.reshape(5, 16, 16, 3)
    assert per_frame[1, :8].min() == 1.0 and per_frame[1, 8:].max() == 0.0 and per_frame[0].max() == 0.0


def test_the_bar_counts_exactly_five_points_under_as_within():
    for student, teacher in ((0.48, 0.53), (0.89, 0.94), (0.69, 0.74)):  # float 0.53 - 0.05 > 0.48
        assert dmd_toy.within_bar(student, teacher)
    assert not dmd_toy.within_bar(0.47, 0.53) and dmd_toy.within_bar(0.60, 0.55)


def test_reused_teacher_rows_are_checked_by_regenerating_and_refused_when_reads_differ(tiny_checkpoint):
    from types import SimpleNamespace

    import pytest
    from toy_quality import t2v_quality

    from flowstudio.pipeline import WanVideoPipeline

    pipe = WanVideoPipeline.from_pretrained(tiny_checkpoint, device="cpu")
    _, _, items, _ = t2v_quality(pipe, 2, 2, 5.0, "unipc", 5.0)
    settings = {"prompts": 3, "i2v_clips": 1, "fd_clips": 3}
    row = {"name": "teacher", "model": str(tiny_checkpoint), "steps": 2, "guidance_scale": 5.0,
           "solver": "unipc", "shift": 5.0, "items": [*items, items[0]], "toy_fd": 1.5}  # fmt: skip
    earlier = {"settings": settings, "rows": [row]}
    args = SimpleNamespace(teacher=tiny_checkpoint, check_prompts=2, reuse_teacher="earlier.json", **settings)
    reused = dmd_toy.reuse("teacher", 2, 5.0, 5.0, args, earlier)
    assert reused["toy_fd"] == 1.5 and reused["items"] == row["items"]
    assert reused["model_calls_per_clip"] == 4 and reused["reused_from"] == "earlier.json"
    wrong = items[1] | {"color": {"expected": items[1]["color"]["expected"], "read": "no such colour"}}
    earlier["rows"][0]["items"] = [items[0], wrong, items[0]]
    with pytest.raises(SystemExit, match="prompt 1 reads"):
        dmd_toy.reuse("teacher", 2, 5.0, 5.0, args, earlier)
    with pytest.raises(SystemExit, match="settings"):
        dmd_toy.reuse("teacher", 2, 5.0, 5.0, SimpleNamespace(**{**vars(args), "prompts": 200}), earlier)
    # a teacher setting the earlier report has no row of is not an error: the caller measures it
    assert dmd_toy.reuse("teacher, 8 steps", 8, 5.0, 5.0, args, earlier) is None
