"""The preset sweep's pure parts: fresh pairs of one type, the Wilson interval, and the composite it
applies after the edit (the same functions the engine calls)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))  # the script imports edit_toy's helpers as its neighbour
spec = importlib.util.spec_from_file_location("preset_sweep", BENCH / "preset_sweep.py")
preset_sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(preset_sweep)
import edit_toy  # noqa: E402


def test_tuning_and_validation_pairs_are_of_the_type_and_disjoint_from_each_other_and_edit_toy():
    tune = preset_sweep.indices_of("color", preset_sweep.TUNE_START, 40)
    validate = preset_sweep.indices_of("color", preset_sweep.VALIDATE_START, 40)
    assert not set(tune) & set(validate) and min(tune) >= 100, "no pair of a 100-pair edit_toy run"
    assert {kind for _, kind, _, _ in edit_toy.specs_at(tune[:5] + validate[:5])} == {"color"}
    assert [i for i, *_ in edit_toy.specs_at(range(3))] == [i for i, *_ in edit_toy.pair_specs(3)]


def test_wilson_interval():
    low, high = preset_sweep.wilson(0, 20)
    assert low == 0.0 and high == pytest.approx(0.161, abs=1e-3)
    low, high = preset_sweep.wilson(30, 40)
    assert (low, high) == (pytest.approx(0.598, abs=1e-3), pytest.approx(0.858, abs=1e-3))


def test_the_composite_keeps_the_source_where_nothing_changed_and_the_edit_where_it_did():
    source = np.full((3, 32, 32, 3), 100, np.uint8)
    edited = source.copy()
    edited[:, 8:24, 8:24] = (200, 40, 40)  # a region the edit recoloured
    edited[:, :4] += 10  # regeneration noise below the threshold
    out = preset_sweep.apply({"threshold": 0.2, "grow": 1}, edited, source)
    assert (out[:, :4] == source[:, :4]).all(), "a small change is reverted to the source"
    assert (out[:, 12:20, 12:20] == edited[:, 12:20, 12:20]).all(), "the recoloured region is kept"
    assert preset_sweep.apply(None, edited, source) is edited
    settings = preset_sweep.composite_settings([0.1, 0.2], [1, 3])
    assert settings[0] is None and len(settings) == 5
    both = preset_sweep.composite_settings([0.1, 0.2], [1, 3], (False, True))
    assert len(both) == 9 and sum(s["largest"] for s in both[1:]) == 4
    assert preset_sweep.label(5.0, both[-1]) == "cfg 5, change t=0.2 grow=3, largest region"


def test_the_largest_region_setting_reverts_a_far_blotch():
    source = np.full((2, 48, 48, 3), 100, np.uint8)
    edited = source.copy()
    edited[:, 8:24, 8:24] = (200, 40, 40)  # the recoloured object
    edited[:, 40:44, 40:44] = (40, 200, 40)  # a blotch elsewhere
    every = preset_sweep.apply({"threshold": 0.2, "grow": 1, "largest": False}, edited, source)
    largest = preset_sweep.apply({"threshold": 0.2, "grow": 1, "largest": True}, edited, source)
    assert (every[:, 41, 41] == edited[:, 41, 41]).all() and (largest[:, 41, 41] == source[:, 41, 41]).all()
    assert (largest[:, 12:20, 12:20] == edited[:, 12:20, 12:20]).all()


def test_cached_edits_are_read_back_instead_of_made_again(tmp_path, monkeypatch):
    from types import SimpleNamespace

    calls = []

    def fake_edit_pair(pipe, pair, options, seed, device):
        calls.append(options["target_guidance"])
        frames = np.full((3, 8, 8, 3), int(options["target_guidance"]), np.uint8)
        return SimpleNamespace(frames=frames, source_frames=pair["source"]), {"seconds": 1.5}

    monkeypatch.setattr(preset_sweep, "edit_pair", fake_edit_pair)
    pair = {"index": 7, "source": np.zeros((3, 8, 8, 3), np.uint8)}
    options = {"method": "flowedit", "target_guidance": 5.0, "blend": "anything"}
    first = preset_sweep.edit_without_composite(None, pair, options, 5.0, tmp_path, "m")
    again = preset_sweep.edit_without_composite(None, pair, options, 5.0, tmp_path, "m")
    assert calls == [5.0], "the second call read the stored edit"
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and again[2] == 1.5
    preset_sweep.edit_without_composite(None, pair, options, 7.0, tmp_path, "m")  # another guidance
    preset_sweep.edit_without_composite(None, pair, options, 5.0, tmp_path, "other-model")
    assert calls == [5.0, 7.0, 5.0] and len(list(tmp_path.glob("edit_*.npz"))) == 3
    assert not list(tmp_path.glob("*.part.npz"))


def test_the_refine_setting_applies_the_engines_grabcut_refinement():
    from flowstudio.edit.blending import change_mask, composite, refine_region

    rng = np.random.default_rng(0)
    source = np.clip(rng.normal(120, 5, (2, 48, 48, 3)), 0, 255).astype(np.uint8)
    source[:, 14:34, 14:34] = (200, 40, 40)
    edited = source.copy()
    edited[:, 12:36, 12:36] = (40, 40, 200)  # recoloured, two pixels past the true outline
    setting = {"threshold": 0.2, "grow": 1, "largest": False, "refine": "source"}
    region = refine_region(change_mask(edited, source, 0.2, preset_sweep.BLUR, 1), source)
    np.testing.assert_array_equal(
        preset_sweep.apply(setting, edited, source), composite(edited, source, region)
    )
    settings = preset_sweep.composite_settings([0.2], [1], (False,), ("none", "source"))
    assert [s["refine"] for s in settings[1:]] == ["none", "source"]
    assert preset_sweep.label(5.0, setting) == "cfg 5, change t=0.2 grow=1, GrabCut on source"


def test_the_soft_refine_setting_cuts_without_a_sure_core():
    from flowstudio.edit import BlendConfig
    from flowstudio.edit.blending import change_mask, composite, refine_region

    rng = np.random.default_rng(1)
    source = np.clip(rng.normal(120, 5, (2, 48, 48, 3)), 0, 255).astype(np.uint8)
    source[:, 14:34, 14:34] = (200, 40, 40)
    edited = source.copy()
    edited[:, 14:34, 14:34] = (40, 40, 200)  # the recoloured object
    edited[:, 2:8, 38:46] = (90, 160, 90)  # a blotch redrawn on the background
    setting = {"threshold": 0.2, "grow": 1, "largest": False, "refine": "source-soft"}
    region = refine_region(change_mask(edited, source, 0.2, preset_sweep.BLUR, 1), source, sure_core=False)
    out = preset_sweep.apply(setting, edited, source)
    np.testing.assert_array_equal(out, composite(edited, source, region))
    # the soft cut keeps the object's new colour and drops the blotch, which the source shows as background
    assert (out[:, 24, 24] == (40, 40, 200)).all()
    np.testing.assert_array_equal(out[:, 4, 42], source[:, 4, 42])
    assert preset_sweep.refine_fields("both-soft") == {
        "change_refine": "both",
        "change_refine_sure_core": False,
    }
    assert (
        preset_sweep._setting_of(BlendConfig(change_refine="source", change_refine_sure_core=False))["refine"]
        == "source-soft"
    )
    assert preset_sweep.label(5.0, setting).endswith("GrabCut on source (soft: no sure core)")
    assert preset_sweep.refine_fields("source-soft-edges") == {
        "change_refine": "source",
        "change_refine_sure_core": False,
        "change_refine_border": preset_sweep.EDGE_BORDER,
    }
    edges = BlendConfig(change_refine="source", change_refine_sure_core=False, change_refine_border=8)
    assert preset_sweep._setting_of(edges)["refine"] == "source-soft-edges"
    with pytest.raises(ValueError, match="unknown refinement"):
        preset_sweep.refine_fields("edges")


def test_every_refine_value_round_trips_through_a_blend_config():
    from flowstudio.edit import BlendConfig

    for refine in preset_sweep.REFINES:
        assert preset_sweep.refine_of(BlendConfig(**preset_sweep.refine_fields(refine))) == refine
    with pytest.raises(SystemExit, match="not one of --refine's values"):
        preset_sweep.refine_of(BlendConfig(change_refine="both", change_refine_border=8))  # no both-edges


def _summary(accuracy: float, keep: float) -> dict:
    return {"accuracy": accuracy, "keep_psnr": keep}


def test_rules_choose_on_accuracy_first_or_on_the_keep_bar_first() -> None:
    tuning = {
        "preset": _summary(0.80, 17.6),
        "accurate": _summary(0.85, 13.7),
        "keeps more at the preset's accuracy": _summary(0.80, 19.3),
        "keeps the bar": _summary(0.65, 66.9),
        "keeps the bar, less accurate": _summary(0.55, 80.0),
    }
    assert preset_sweep.choose(tuning, "preset", "keep-at-accuracy") == "keeps more at the preset's accuracy"
    assert preset_sweep.choose(tuning, "preset", "keep-bar") == "keeps the bar"
    # no setting keeps 30 dB: the keep-bar rule falls back to the accuracy-first rule
    below = {n: s for n, s in tuning.items() if s["keep_psnr"] < preset_sweep.KEEP_BAR}
    assert preset_sweep.choose(below, "preset", "keep-bar") == "keeps more at the preset's accuracy"
    with pytest.raises(ValueError, match="unknown rule"):
        preset_sweep.choose(tuning, "preset", "best")


def test_subject_settings_paste_the_sources_subject_back_as_the_engine_does():
    from flowstudio.edit import BlendConfig
    from flowstudio.edit.blending import composite, grow_mask, subject_mask

    settings = preset_sweep.composite_settings([0.2], [3], subject_insets=[4, 8], subject_grows=[2])
    assert settings[0] is None and len(settings) == 4
    assert settings[2:] == [{"subject_inset": 4, "subject_grow": 2}, {"subject_inset": 8, "subject_grow": 2}]
    assert preset_sweep.composite_settings([0.2], [3], subject_insets=[4]) == settings[:2], "needs grows too"
    confirmed = preset_sweep.composite_settings(
        [], [], subject_insets=[8], subject_grows=[0], subject_confirms=[0, 4]
    )
    assert confirmed[1:] == [
        {"subject_inset": 8, "subject_grow": 0},
        {"subject_inset": 8, "subject_grow": 0, "subject_confirm_grow": 4},
    ]
    assert "confirmed by the edit's cut grown 4" in preset_sweep.label(5.0, confirmed[2])
    blend = BlendConfig(strength=0.0, pixel_composite=True, composite_mask="subject", subject_inset=8)
    assert preset_sweep._setting_of(blend) == {"subject_inset": 8, "subject_grow": 0}
    assert "subject composite" in preset_sweep.label(5.0, settings[3])
    rng = np.random.default_rng(0)
    source = rng.integers(60, 120, (2, 48, 48, 3), dtype=np.uint8)
    source[:, 16:32, 18:30] = (230, 30, 30)  # the product, inside the border
    edited = rng.integers(0, 255, source.shape, dtype=np.uint8)
    out = preset_sweep.apply(settings[3], edited, source)
    expected = composite(edited, source, 1.0 - grow_mask(subject_mask(source, 8), 2))
    assert np.array_equal(out, expected)
    assert np.array_equal(out[:, 16:32, 18:30], source[:, 16:32, 18:30]), "the product is the source's"
    assert np.array_equal(out[:, :4], edited[:, :4]), "the border is the edit's"


def test_swap_settings_paint_the_old_product_out_as_the_engine_does():
    from flowstudio.edit import BlendConfig
    from flowstudio.edit.blending import swap_composite

    settings = preset_sweep.composite_settings([0.2], [3], swap_plate_grows=[1, 2], swap_erodes=[2])
    assert settings[2:] == [{"swap_plate_grow": 1, "swap_erode": 2}, {"swap_plate_grow": 2, "swap_erode": 2}]
    assert preset_sweep.composite_settings([0.2], [3], swap_plate_grows=[1]) == settings[:2], "needs erodes"
    blend = BlendConfig(strength=0.0, pixel_composite=True, composite_mask="swap")
    assert preset_sweep._setting_of(blend) == {
        "swap_plate_grow": 0,
        "swap_erode": 3,
        "swap_backdrop_tolerance": 0.12,
        "swap_plate_check": 1.6,
    }
    assert "swap composite" in preset_sweep.label(5.0, settings[2])
    assert "checked by its colours at 1.6x" in preset_sweep.label(5.0, preset_sweep._setting_of(blend))
    holes = preset_sweep.composite_settings(
        [0.2], [3], swap_plate_grows=[0], swap_erodes=[3], swap_backdrop_tolerances=[0.0, 0.12]
    )
    assert holes[2:] == [
        {"swap_plate_grow": 0, "swap_erode": 3},
        {"swap_plate_grow": 0, "swap_erode": 3, "swap_backdrop_tolerance": 0.12},
    ]
    assert "backdrop within 0.12 dropped" in preset_sweep.label(5.0, holes[3])
    rng = np.random.default_rng(0)
    source = rng.integers(100, 130, (2, 48, 48, 3), dtype=np.uint8)
    source[:, 16:32, 14:34] = (230, 30, 30)  # a wide product
    edited = source.copy()
    edited[:, 16:32, 14:34] = rng.integers(100, 130, (2, 16, 20, 3), dtype=np.uint8)
    edited[:, 10:38, 20:28] = (230, 30, 30)  # swapped for a tall narrow one
    out = preset_sweep.apply(settings[2], edited, source)
    first = BlendConfig(
        strength=0.0,
        pixel_composite=True,
        composite_mask="swap",
        swap_plate_grow=1,
        swap_erode=2,
        swap_backdrop_tolerance=0.0,  # a setting without a tolerance: the swap before the hole step
        swap_plate_check=0.0,  # ... and before the plate check
    )
    assert np.array_equal(out, swap_composite(edited, source, first)[0])
    tuned = dataclasses.replace(first, swap_plate_grow=0, swap_erode=3, swap_backdrop_tolerance=0.12)
    assert np.array_equal(
        preset_sweep.apply(holes[3], edited, source), swap_composite(edited, source, tuned)[0]
    )
    checked = dataclasses.replace(tuned, swap_plate_check=1.6)
    assert np.array_equal(
        preset_sweep.apply(preset_sweep._setting_of(checked), edited, source),
        swap_composite(edited, source, checked)[0],
    )
