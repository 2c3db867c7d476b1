"""The fast offline metrics (issue 16, item 4) give the numbers of the frozen implementation they
replaced (:mod:`flowstudio.bench.metrics.baseline`), bit for bit: every comparison is ``==``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowstudio.bench.io import save_frames, save_mask
from flowstudio.bench.manifest import DEFAULT_PRESERVE, Case
from flowstudio.bench.metrics import baseline, color, content_cache, pixel, temporal
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


def test_squared_error_map_bits() -> None:
    """The table-and-transform squared error equals the int32 formula it replaced, bit for bit (the
    frozen implementation imports this function from the library, so it is checked here)."""
    a = RNG.integers(0, 256, (3, 40, 70, 3), dtype=np.uint8)
    b = RNG.integers(0, 256, a.shape, dtype=np.uint8)
    a[0, 0, 0], b[0, 0, 0] = 255, 0  # the largest error, 3 * 255^2 / 3
    b[1] = a[1]  # a frame without error
    for x, y in ((a, b), (a[:, ::2], b[:, 1::2])):  # contiguous, and strided views
        sq = (x.astype(np.int32) - y) ** 2
        want = (sq[..., 0] + sq[..., 1] + sq[..., 2]).astype(np.float32) * np.float32(1.0 / 3.0)
        got = pixel.squared_error_map(x, y)
        assert got.dtype == np.float32 and got.shape == x.shape[:3]
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert (
        pixel.squared_error_map(a, b)[0, 0, 0] == np.float32(65025.0)
        and not pixel.squared_error_map(a, b)[1].any()
    )


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


# --- the content-hash cache of reference intermediates (source flow, SSIM moments, CIELAB) -------------


def _old(case: Case, output: np.ndarray, source: np.ndarray, target: np.ndarray) -> dict:
    x = case_inputs(case, output, source=source)
    old = baseline.score_offline(
        output,
        source,
        truth=target,
        edit_region=x.get("edit_region"),
        kept_region=x.get("kept_region"),
        object_mask=x.get("object_mask"),
        attributes=case.attributes,
    )
    return {k: v for k, v in old.items() if v is not None}


@pytest.mark.parametrize("edit_type", ["color", "background"])
def test_warm_cache_gives_the_frozen_numbers_for_every_output(tmp_path: Path, edit_type: str) -> None:
    """Several outputs of one case (as several methods): the first fills the cache, the rest reuse it;
    every score equals the frozen implementation's, cold and warm."""
    w = _edit_case(tmp_path / edit_type, edit_type)
    case, source, target = w["case"], w["source"], w["target"]
    outputs = _outputs(target, source)
    content_cache.clear()
    for name, output in outputs.items():
        assert score_case(case, output, source=source)["metrics"] == _old(case, output, source, target), name
    assert content_cache.CACHE.hits > 0 and len(content_cache.CACHE) >= 4  # flow, 2 moments, 2 Lab
    hits = content_cache.CACHE.hits
    for name, output in outputs.items():  # fully warm: the same numbers again
        assert score_case(case, output, source=source)["metrics"] == _old(case, output, source, target), name
    assert content_cache.CACHE.hits > hits


def test_cache_is_keyed_by_content(tmp_path: Path) -> None:
    """A different source under the same case id is not served the first source's intermediates."""
    a = _edit_case(tmp_path / "a", "color")
    content_cache.clear()
    out = _outputs(a["target"], a["source"])["noisy"]
    score_case(a["case"], out, source=a["source"])
    other = np.ascontiguousarray(a["source"][:, :, ::-1])  # mirrored: same shape, other content
    assert content_cache.content_key(other) != content_cache.content_key(a["source"])
    warm = score_case(a["case"], out, source=other)["metrics"]
    assert warm == _old(a["case"], out, other, a["target"])
    content_cache.clear()
    assert score_case(a["case"], out, source=other)["metrics"] == warm


def test_cache_bound_and_off() -> None:
    cache = content_cache.ContentCache(max_bytes=3000)
    calls: list[str] = []

    def make(name: str, size: int) -> np.ndarray:
        calls.append(name)
        return np.zeros(size, np.uint8)

    cache.get("k", "a", lambda: make("a", 1000))
    cache.get("k", "b", lambda: make("b", 1000))
    cache.get("k", "a", lambda: make("a", 1000))  # hit, and a becomes the most recent
    cache.get("k", "c", lambda: make("c", 1500))  # evicts b (least recently used)
    assert calls == ["a", "b", "c"] and cache.bytes == 2500 and len(cache) == 2
    cache.get("k", "b", lambda: make("b", 1000))
    assert calls[-1] == "b"
    cache.get("k", "huge", lambda: make("huge", 5000))  # larger than the bound: computed, not kept
    assert cache.bytes <= 3000 and ("k", "huge") not in cache._items
    off = content_cache.ContentCache(max_bytes=0)
    off.get("k", "a", lambda: make("a", 10))
    off.get("k", "a", lambda: make("a", 10))
    assert calls[-2:] == ["a", "a"] and len(off) == 0


def test_precomputed_reference_intermediates_give_the_same_bits() -> None:
    a = RNG.integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)
    b = np.clip(a.astype(np.int16) + RNG.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    region = RNG.random(a.shape[:3]) < 0.6
    lab = color.region_lab(b, region)
    assert np.array_equal(color.delta_e_map(a, b, region, lab), baseline.delta_e_map(a, b, region))
    assert color.delta_e_clip(a, b, region, color.region_lab(b)) == baseline.delta_e_clip(a, b, region)
    maps = pixel.ssim_maps_against(a, {"b": b}, {"b": pixel.reference_moments(b)})["b"]
    assert np.array_equal(maps, baseline.ssim_maps(a, b))
    flow32 = temporal.optical_flow(a)
    assert temporal.motion_epe(flow32, temporal.optical_flow(b)) == baseline.motion_epe(
        baseline.optical_flow(a), baseline.optical_flow(b)
    )
    flow64 = flow32.astype(np.float64)
    assert temporal.motion_epe(flow64, flow32) == baseline.motion_epe(flow64, flow32)


@pytest.mark.parametrize("workers", [2, 3])
def test_frame_parallel_scoring_gives_the_frozen_numbers(tmp_path: Path, workers: int) -> None:
    """score_case(workers=N): per-frame work in N processes over frame chunks, the same numbers, cold
    (source flow and the workers' reference intermediates computed) and warm (from the caches)."""
    from flowstudio.bench.metrics import parallel

    assert parallel._bounds(5, 3) == [(0, 2), (2, 3), (3, 5)] and parallel._bounds(2, 3) == [(0, 1), (1, 2)]
    # the worker with a frame more of maps gets fewer flow pairs; every pair once, in order
    assert parallel._pair_bounds(17, parallel._bounds(17, 2)) == [(0, 9), (9, 16)]
    assert parallel._pair_bounds(5, parallel._bounds(5, 5)) == [(0, 1), (1, 2), (2, 2), (2, 3), (3, 4)]
    for edit_type in ("color", "background", "style"):
        w = _edit_case(tmp_path / edit_type, edit_type, frames=9)
        case, source, target = w["case"], w["source"], w["target"]
        content_cache.clear()
        parallel.clear_workers()
        for name, output in _outputs(target, source).items():
            fast = score_case(case, output, source=source, workers=workers)
            assert fast["metrics"] == _old(case, output, source, target), (edit_type, name)
            assert fast["metrics"] == score_case(case, output, source=source)["metrics"]


def test_a_shared_memory_arena_is_reused_only_once_no_view_of_it_is_left() -> None:
    """The frame-parallel path hands its maps out as views of a reused arena: a case's maps must never
    be overwritten by the next case while something still holds them."""
    from flowstudio.bench.metrics import parallel

    saved = parallel._ARENAS[:]
    parallel._ARENAS.clear()
    try:
        layout, sizes = parallel._layout([{"maps": ((2, 3), np.float32)}])
        first = parallel._arena(sizes[0], [])
        maps = parallel._viewer([first], layout)("maps")[1:]  # a view of a view
        maps[...] = 7
        assert first.in_use()
        second = parallel._arena(sizes[0], [])
        assert second is not first, "an arena with a live view was handed out again"
        parallel._viewer([second], layout)("maps")[...] = 0
        assert (maps == 7).all()
        del maps
        assert not first.in_use() and parallel._arena(sizes[0], [second]) is first
    finally:
        for arena in parallel._ARENAS:
            arena.drop()
        parallel._ARENAS[:] = saved


def test_with_workers_this_process_only_averages_the_per_frame_values(tmp_path: Path, monkeypatch) -> None:
    """The workers reduce the maps frame by frame under the names the metrics read: none is reduced
    again here (the serial part of a frame-parallel score stays small)."""
    w = _edit_case(tmp_path, "color")
    reduced: list[str] = []
    for name in ("frame_means", "frame_psnrs"):
        original = getattr(pixel, name)
        monkeypatch.setattr(
            pixel, name, lambda *a, _f=original, _n=name, **k: reduced.append(_n) or _f(*a, **k)
        )
    output = _outputs(w["target"], w["source"])["noisy"]
    fast = score_case(w["case"], output, source=w["source"], workers=2)["metrics"]
    assert not reduced and {"bg_psnr", "bg_ssim", "gt_ssim_outside", "color_fidelity"} <= set(fast)
    assert fast == score_case(w["case"], output, source=w["source"])["metrics"] and reduced


def _region_mean_before(values: np.ndarray, region: np.ndarray | None, border: int) -> float | None:
    """pixel.region_mean as it was before its per-frame split (the frozen baseline imports it)."""
    if region is None:
        inner = (
            values[:, border : values.shape[1] - border, border : values.shape[2] - border]
            if border
            else values
        )
        return float(inner.reshape(inner.shape[0], -1).mean(axis=1, dtype=np.float64).mean())
    per_frame = [float(v[m].mean(dtype=np.float64)) for v, m in zip(values, region, strict=True) if m.any()]
    return float(np.mean(per_frame)) if per_frame else None


def _psnr_before(error: np.ndarray, region: np.ndarray | None) -> float | None:
    values = []
    for i in range(error.shape[0]):
        if region is not None and not region[i].any():
            continue
        mse = float(
            error[i].mean(dtype=np.float64) if region is None else error[i][region[i]].mean(dtype=np.float64)
        )
        values.append(
            pixel.PSNR_CAP
            if mse <= 255.0**2 * 10 ** (-pixel.PSNR_CAP / 10)
            else float(10 * np.log10(255.0**2 / mse))
        )
    return float(np.mean(values)) if values else None


@pytest.mark.parametrize("shape", [(1, 12, 13), (9, 48, 83), (3, 480, 832)])
def test_region_means_and_psnr_from_per_frame_values_keep_their_bits(shape: tuple[int, int, int]) -> None:
    """region_mean and psnr_from_error are now averages of frame_means / frame_psnrs (which the
    frame-parallel workers compute per chunk); the frozen baseline imports them, so they are checked
    here against their former code."""
    for scale in (1e-3, 1.0, 300.0):
        values = (RNG.random(shape, dtype=np.float32) * scale).astype(np.float32)
        region = RNG.random(shape) < 0.3
        region[0] = False  # a frame with an empty region
        for r in (None, region, ~region, np.zeros(shape, bool)):
            for border in (0, 5):
                assert pixel.region_mean(values, r, border=border) == _region_mean_before(values, r, border)
            assert pixel.psnr_from_error(values * 100, r) == _psnr_before(values * 100, r)


def test_scoring_keeps_freed_memory_for_reuse(monkeypatch) -> None:
    """score_case sets glibc's malloc to keep freed blocks (no change to any number, see above);
    FLOWSTUDIO_KEEP_FREED_MEMORY=0 leaves the allocator alone."""
    import sys

    from flowstudio.bench.metrics import memory

    if sys.platform.startswith("linux"):
        assert memory.keep_freed_memory() in (True, False)  # musl has no mallopt
        assert memory.keep_freed_memory() is memory._DONE[0], "applied once per process"
    monkeypatch.setenv("FLOWSTUDIO_KEEP_FREED_MEMORY", "0")
    assert memory._apply() is False
