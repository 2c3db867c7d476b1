"""The fast offline metrics (issue 16, item 4) give the numbers of the frozen implementation they
replaced (:mod:`flowstudio.bench.metrics.baseline`), bit for bit: every comparison is ``==``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowstudio.bench.io import save_frames, save_mask
from flowstudio.bench.manifest import DEFAULT_PRESERVE, Case
from flowstudio.bench.metrics import baseline, color, pixel, temporal
from flowstudio.bench.scoring import case_inputs, score_case
from flowstudio.worlds.edits import edit_spec
from flowstudio.worlds.shapes import SceneSpec, render_scene

RNG = np.random.default_rng(16)


def _edit_case(folder: Path, edit_type: str, frames: int = 5, size: tuple[int, int] = (64, 96)) -> dict:
    spec = SceneSpec(
        shape="cup", color="red", material="striped", background="wood", motion="turntable_pan_left", seed=3
    )
    target_spec = edit_spec(spec, edit_type, 1)
    source, target = render_scene(spec, frames, *size), render_scene(target_spec, frames, *size)
    folder.mkdir(parents=True, exist_ok=True)
    case = Case(
        id=edit_type,
        edit_type=edit_type,
        source=save_frames(folder / "source.npz", source.frames),
        source_prompt="a red cup",
        target_prompt="an edited cup",
        mask=save_mask(folder / "mask.npz", source.mask),
        target_mask=save_mask(folder / "target_mask.npz", target.mask),
        target=save_frames(folder / "target.npz", target.frames),
        preserve=DEFAULT_PRESERVE.get(edit_type, "outside_mask"),
        attributes={
            "world": "shapeworld",
            "field": edit_type,
            "source": spec.to_dict(),
            "target": target_spec.to_dict(),
        },
    )
    return {"case": case, "source": source.frames, "target": target.frames}


def _outputs(target: np.ndarray, source: np.ndarray) -> dict[str, np.ndarray]:
    noisy = np.clip(target.astype(np.int16) + RNG.integers(-6, 7, target.shape), 0, 255).astype(np.uint8)
    grey = np.repeat(target.mean(-1, keepdims=True).astype(np.uint8), 3, -1)  # near-zero chroma
    return {
        "noisy": noisy,
        "source_copy": source.copy(),  # many identical pixels (delta E skipped there)
        "greyed": grey,
        "shuffled": noisy[::-1].copy(),  # inconsistent flow
        "flat": np.full_like(target, 128),  # no texture: flow and SSIM at their edges
    }


@pytest.mark.parametrize("edit_type", ["color", "background", "style", "material"])
def test_score_case_equals_the_frozen_implementation(tmp_path: Path, edit_type: str) -> None:
    w = _edit_case(tmp_path / edit_type, edit_type)
    case = w["case"]
    for name, output in _outputs(w["target"], w["source"]).items():
        fast = score_case(case, output, source=w["source"])["metrics"]
        x = case_inputs(case, output, source=w["source"])
        old = baseline.score_offline(
            output,
            w["source"],
            truth=w["target"],
            edit_region=x.get("edit_region"),
            kept_region=x.get("kept_region"),
            object_mask=x.get("object_mask"),
            attributes=case.attributes,
        )
        assert fast == {k: v for k, v in old.items() if v is not None}, (edit_type, name)
        assert len(fast) >= 9


def test_ciede2000_bits_on_random_lab() -> None:
    lab1 = RNG.uniform([0, -128, -128], [100, 128, 128], (200_000, 3)).astype(np.float32)
    lab2 = lab1 + RNG.normal(0, 2, lab1.shape).astype(np.float32)
    lab1[::5, 1:] = 0.0  # chroma 0: the hue-mean and hue-difference special cases
    lab2[::7, 1:] = RNG.normal(0, 1e-6, (len(lab2[::7]), 2))  # near-grey: subnormal powers
    lab2[::11] = lab1[::11]
    for dtype in (np.float32, np.float64):
        a, b = lab1.astype(dtype), lab2.astype(dtype)
        assert np.array_equal(color.ciede2000(a, b), baseline.ciede2000(a, b))


def test_delta_e_and_lab_bits_on_random_pixels() -> None:
    a = RNG.integers(0, 256, (3, 64, 1500, 3), dtype=np.uint8)  # > one block of pixels
    b = np.clip(a.astype(np.int16) + RNG.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    b[0, :8] = a[0, :8]
    region = RNG.random(a.shape[:3]) < 0.7
    assert np.array_equal(color.rgb_to_lab(a), baseline.rgb_to_lab(a))
    assert np.array_equal(color.delta_e_map(a, b), baseline.delta_e_map(a, b))
    assert color.delta_e_clip(a, b, region) == baseline.delta_e_clip(a, b, region)


def test_ssim_and_warp_bits_on_random_clips() -> None:
    a = RNG.integers(0, 256, (4, 40, 56, 3), dtype=np.uint8)
    b, c = np.roll(a, 2, axis=2), RNG.integers(0, 256, a.shape, dtype=np.uint8)
    both = pixel.ssim_maps_against(a, {"b": b, "c": c})
    assert np.array_equal(both["b"], baseline.ssim_maps(a, b))
    assert np.array_equal(both["c"], baseline.ssim_maps(a, c))
    assert np.array_equal(pixel.ssim_maps(a, c), both["c"])
    flow, back = temporal.optical_flow(b), temporal.optical_flow(b, backward=True)
    assert temporal.warp_stats(b, flow, back) == baseline.warp_stats(b, flow, back)
    assert temporal.motion_epe(temporal.optical_flow(a), flow) == baseline.motion_epe(
        baseline.optical_flow(a), flow
    )
