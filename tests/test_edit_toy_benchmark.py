"""The editing benchmark's decision rules: how presets are chosen and how the issue's bars are judged."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "edit_toy.py"
spec = importlib.util.spec_from_file_location("edit_toy", SCRIPT)
edit_toy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(edit_toy)


def _entry(name, acc, keep, psnr, seconds, rows, style_psnr=None):
    by_type = {
        "color": {"psnr": psnr, "keep_psnr": keep, "attr_acc": acc},
        "style": {"psnr": style_psnr if style_psnr is not None else psnr, "keep_psnr": None, "attr_acc": acc},
    }
    return {
        "config": name,
        "pairs": 100,
        "psnr": psnr,
        "keep_psnr": keep,
        "attr_acc": acc,
        "seconds": seconds,
        "row_evaluations": rows,
        "by_type": by_type,
    }


SUMMARY = [
    _entry("baseline", 0.5, 20.0, 18.0, 4.0, 90),
    _entry("flowedit", 0.6, 21.0, 18.5, 3.0, 120),
    _entry("keeps-but-does-not-edit", 0.1, 40.0, 17.0, 2.0, 40),
    _entry("edits-and-keeps", 0.6, 30.0, 19.0, 3.5, 120, style_psnr=10.0),
    _entry("fast", 0.55, 22.0, 18.2, 1.5, 40, style_psnr=20.0),
    _entry("flowedit+oracle-mask", 1.0, 60.0, 30.0, 3.0, 120),
    _entry("preset", 1.0, 60.0, 30.0, 3.0, 120),
    _entry("identity", 0.1, 100.0, 16.0, 0.0, 0),  # the source returned as is: readers err 1 in 10
]


def test_rows_cut_short_are_reported_but_never_chosen():
    short = dict(_entry("short-but-perfect", 1.0, 90.0, 40.0, 0.1, 10), pairs=10)
    chosen = edit_toy.choose_per_type([*SUMMARY, short])
    assert all(c["config"] != "short-but-perfect" for c in chosen.values())


def test_the_chosen_configuration_edits_first_then_keeps():
    chosen = edit_toy.choose_per_type(SUMMARY)
    # "keeps-but-does-not-edit" keeps best but does not edit; oracle and preset rows are never chosen
    assert chosen["color"]["config"] == "edits-and-keeps"
    # style changes every pixel: chosen by PSNR against the true edit among the accurate rows
    assert chosen["style"]["config"] == "fast"


def test_accuracy_differences_within_noise_count_as_equal():
    assert edit_toy.accuracy_tolerance(0.1, 20) == pytest.approx(1.64 * (2 * 0.1 * 0.9 / 20) ** 0.5)
    assert edit_toy.accuracy_tolerance(0.0, 20) == 0.05  # never below one pair in twenty
    assert edit_toy.accuracy_tolerance(0.5, 10_000) == 0.05


def test_the_bars_are_judged_against_both_reference_rows():
    bars = edit_toy.verdicts(SUMMARY)
    assert bars["beats_references_on_keep_at_equal_or_better_accuracy"] == ["edits-and-keeps"]
    # "fast" (0.55) is within noise of the references' 0.6 over 100 pairs, and keeps better than both
    assert bars["beats_references_on_keep_at_accuracy_within_noise"] == ["edits-and-keeps", "fast"]
    fast = bars["fastest_at_baseline_quality"]
    assert fast["config"] == "fast" and fast["speedup_seconds"] == pytest.approx(4.0 / 1.5, abs=0.01)


def test_a_fast_setting_must_keep_what_the_baseline_keeps():
    """Faster at the baseline's accuracy but losing keep PSNR is not the baseline's quality."""
    sloppy = _entry("fast-but-sloppy", 0.55, 19.0, 18.5, 1.0, 30)
    bars = edit_toy.verdicts([*SUMMARY, sloppy])
    assert bars["fastest_at_baseline_quality"]["config"] == "fast"


def test_merging_refuses_overlapping_or_incomplete_shards(tmp_path):
    rows = [{"config": "baseline", "pair": 0, "type": "color"}]
    settings = {"model": "m", "pairs": 2, "shard": "0/2"}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "edit_toy.json").write_text(json.dumps({"settings": settings, "rows": rows}))
    with pytest.raises(SystemExit, match="overlap"):
        edit_toy.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    with pytest.raises(SystemExit, match="miss pairs"):
        edit_toy.merge([tmp_path / "a"], tmp_path / "out")


def test_merging_shards_of_one_edit_type_expects_only_that_types_pairs(tmp_path, monkeypatch):
    """``--types background`` shards hold pairs 3, 8, 13, ... only: the others are not missing."""
    written = {}
    monkeypatch.setattr(
        edit_toy, "write_results", lambda out, settings, rows, random_model: written.update(rows=rows)
    )
    settings = {"model": "m", "pairs": 10, "types": ["background"]}
    for name, pair in (("a", 3), ("b", 8)):
        (tmp_path / name).mkdir()
        rows = [{"config": "baseline", "pair": pair, "type": "background"}]
        (tmp_path / name / "edit_toy.json").write_text(
            json.dumps({"settings": {**settings, "shard": name}, "rows": rows})
        )
    edit_toy.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert [r["pair"] for r in written["rows"]] == [3, 8]
    with pytest.raises(SystemExit, match=r"miss pairs \[8\]"):
        edit_toy.merge([tmp_path / "a"], tmp_path / "out")


def test_the_rule_refuses_an_identity_like_configuration():
    identity = _entry("identity", 0.05, 100.0, 16.0, 0.0, 0)
    # keeps (almost) everything and reads the target as often as doing nothing, or barely more
    like_identity = _entry("composite-that-keeps", 0.05, 51.0, 19.0, 2.0, 30)
    barely = _entry("one-pair-more", 0.15, 22.0, 18.0, 3.0, 60)  # 3/20 vs 1/20: p = 0.30
    chosen = edit_toy.choose_per_type([identity, like_identity, barely], {"color": 20, "style": 20})
    for kind in ("color", "style"):
        assert chosen[kind]["config"] is None
        assert chosen[kind]["reason"] == edit_toy.NONE_EDITS
        assert chosen[kind]["reason"] == "none: no configuration edits significantly more than identity"
        assert chosen[kind]["best_accuracy"] == 0.15 and chosen[kind]["identity_accuracy"] == 0.05
    # ... and picks a real one when it exists (8/20 vs 1/20), over the better-keeping non-editor
    real = _entry("edits", 0.4, 30.0, 20.0, 3.0, 60)
    chosen = edit_toy.choose_per_type([identity, like_identity, barely, real], {"color": 20, "style": 20})
    assert chosen["color"]["config"] == "edits" and chosen["color"]["p_vs_identity"] < 0.05


def test_a_row_that_never_edits_is_never_chosen_even_alone():
    identity = _entry("identity", 0.0, 100.0, 16.0, 0.0, 0)
    chosen = edit_toy.choose_per_type([identity, _entry("keeps", 0.0, 60.0, 19.0, 2.0, 30)])
    assert all(c["config"] is None for c in chosen.values())
    with pytest.raises(ValueError, match="no 'identity' row"):
        edit_toy.choose_per_type([_entry("keeps", 0.0, 60.0, 19.0, 2.0, 30)])


def test_unreadable_attributes_and_one_label_outputs_are_not_edits():
    identity = _entry("identity", 0.0, 100.0, 16.0, 0.0, 0)
    identity["by_type"]["color"]["attr_acc"] = None  # no reader (material today)
    identity["by_type"]["style"]["one_label_accuracy"] = 0.35  # 7 of 20 targets share a label
    collapsed = _entry("reads-photo-everywhere", 0.3, 20.0, 18.0, 3.0, 60)  # 6/20: above identity only
    chosen = edit_toy.choose_per_type([identity, collapsed], {"color": 20, "style": 20})
    assert chosen["color"]["reason"] == edit_toy.NONE_UNREADABLE
    assert chosen["style"]["reason"] == edit_toy.NONE_ONE_LABEL
    assert chosen["style"]["above_identity"] == ["reads-photo-everywhere"]


def test_one_sided_fisher_exact_p_values():
    assert edit_toy.one_sided_p(3, 20, 0, 20) == pytest.approx(1140 / 9880)  # C(20,3) / C(40,3)
    assert edit_toy.one_sided_p(5, 20, 0, 20) == pytest.approx(15504 / 658008)
    assert edit_toy.one_sided_p(0, 20, 0, 20) == 1.0
    assert edit_toy.one_sided_p(2, 20, 5, 20) > 0.9  # below the reference: nowhere near significant


def test_one_label_accuracy_is_the_most_common_target_share():
    rows = [{"attr_acc": 0.0, "attr_expected": label} for label in ("photo", "photo", "pixel", "watercolor")]
    assert edit_toy._one_label_accuracy(rows) == 0.5
    assert edit_toy._one_label_accuracy([{"attr_acc": None, "attr_expected": None}]) is None


def test_rechoose_adds_identity_rows_and_rederives_the_choices(tmp_path):
    settings = {"model": "m", "pairs": 2, "frames": 5, "size": 32, "steps": 2, "shard": "0/1"}
    row = {
        "psnr": 15.0,
        "keep_psnr": 20.0,
        "attr_acc": 0.0,
        "attr_read": "x",
        "warp_error": 1.0,
        "model_calls": 4,
        "row_evaluations": 8,
        "seconds": 1.0,
        "peak_memory_mb": 1.0,
    }
    rows = [{"config": "x", "pair": i, "type": kind, **row} for i, kind in ((0, "product"), (1, "color"))]
    (tmp_path / "edit_toy.json").write_text(json.dumps({"settings": settings, "rows": rows}))
    out = edit_toy.rechoose(tmp_path / "edit_toy.json", tmp_path / "out")
    data = json.loads((out / "edit_toy.json").read_text())
    assert {r["config"] for r in data["rows"]} == {"x", "identity"}
    identity = [r for r in data["rows"] if r["config"] == "identity"]
    assert len(identity) == 2 and all(r["model_calls"] == 0 for r in identity)
    assert all(r["attr_expected"] is not None for r in data["rows"])
    assert all(c["config"] is None for c in data["chosen_per_type"].values())
    assert "no configuration edits significantly more than identity" in (out / "edit_toy.md").read_text()


def test_the_transformer_clock_counts_only_forward_calls_and_unhooks():
    import time

    import torch

    class Slow(torch.nn.Module):
        def forward(self, x):
            time.sleep(0.05)
            return x

    module = Slow()
    with edit_toy.TransformerClock(module, "cpu") as clock:
        module(torch.zeros(1))
        module(torch.zeros(1))
        time.sleep(0.1)  # outside the forward: not counted
    assert 0.1 <= clock.seconds < 0.2
    module(torch.zeros(1))  # hooks removed: no longer counted
    assert clock.seconds < 0.2 and not module._forward_hooks and not module._forward_pre_hooks
    assert edit_toy._share({"transformer_seconds": 1.0, "seconds": 4.0}) == "25%"
    assert edit_toy._share({"transformer_seconds": None, "seconds": 4.0}) == "-"


def test_the_oracle_region_is_what_each_edit_type_changes():
    source = np.zeros((2, 8, 8), bool)
    source[:, 2:4, 2:4] = True
    target = np.zeros((2, 8, 8), bool)
    target[:, 3:6, 3:6] = True
    union = source | target
    for kind in ("product", "color", "material"):
        assert (
            edit_toy.oracle_region({"type": kind, "source_mask": source, "target_mask": target}) == union
        ).all()
    background = edit_toy.oracle_region({"type": "background", "source_mask": source, "target_mask": target})
    assert (background == ~union).all(), "a background edit changes everything but the object"
    style = edit_toy.oracle_region({"type": "style", "source_mask": source, "target_mask": target})
    assert style.all(), "a style edit changes the whole frame"


def test_the_summary_reports_the_keep_psnr_median_beside_the_capped_mean():
    """One untouched pair (100 dB cap) lifts the mean by ~27 dB; the median stays with the others."""
    base = {
        "psnr": 15.0,
        "attr_acc": 1.0,
        "attr_expected": "red",
        "warp_error": 1.0,
        "model_calls": 4,
        "row_evaluations": 8,
        "seconds": 1.0,
        "peak_memory_mb": 1.0,
    }
    rows = [
        {"config": "x", "pair": i, "type": "color", **base, "keep_psnr": keep}
        for i, keep in enumerate((20.0, 21.0, 100.0))
    ]
    (entry,) = edit_toy.summarise(rows)
    assert entry["keep_psnr"] == 47.0 and entry["keep_psnr_median"] == 21.0


def test_pairs_of_chosen_edit_types_only():
    specs = edit_toy.pair_specs(20)
    pairs = edit_toy.make_pairs(20, 5, 32, (1, 2), ["background"])
    wanted = [i for i, kind, _, _ in specs if kind == "background" and i % 2 == 1]
    assert [p["index"] for p in pairs] == wanted
    assert all(p["type"] == "background" for p in pairs)
    with pytest.raises(SystemExit, match="unknown edit types"):
        edit_toy.make_pairs(20, 5, 32, (0, 1), ["texture"])


def test_the_vae_dtype_option_loads_the_vae_in_bfloat16_and_decodes_within_a_level(tiny_checkpoint, tmp_path):
    """``--vae-dtype bfloat16`` (an edit's fixed cost, guide_edit "Speed"): the same frames within a level."""
    import torch

    full = edit_toy.open_pipeline(tiny_checkpoint, "cpu", tmp_path)
    half = edit_toy.open_pipeline(tiny_checkpoint, "cpu", tmp_path, "bfloat16")
    assert full.components.vae.dtype == torch.float32 and half.components.vae.dtype == torch.bfloat16
    latents = torch.randn(1, *full.latent_shape(5, 64, 64)[1:], generator=torch.Generator().manual_seed(0))
    a = full.decode_latents(latents).astype(int)
    b = half.decode_latents(latents).astype(int)
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.abs(a - b).mean() < 2.0  # bfloat16 keeps 8 bits of mantissa: about a level of 255


def test_the_student_rows_edit_on_the_students_levels_with_the_presets_composites():
    """The few-step editor rows: FlowEdit on the student's levels, no guidance, with the change-mask
    composite (the teacher's product preset until 2026-12-05) and the colour preset's respectively."""
    from flowstudio.edit.presets import PRESETS

    configs = edit_toy.configurations(20)
    for name, blend in (
        ("student-flowedit+change-composite", edit_toy.CHANGE_COMPOSITE),
        ("student-flowedit+change-composite+grabcut-soft", PRESETS["color"].values["blend"]),
    ):
        row = configs[name]
        assert (row["method"], row["grid"], row["source_guidance"], row["target_guidance"]) == (
            "flowedit",
            "student",
            1.0,
            1.0,
        )
        assert row["blend"] == blend


def test_the_preset_router_takes_each_types_preset_and_flowedit_where_none_is_validated():
    configs = edit_toy.configurations(20)
    routed = configs[edit_toy.ROUTED]
    assert edit_toy.options_for(routed, "color") == {"preset": "color"}
    assert edit_toy.options_for(routed, "background") == {"preset": "background"}
    # material and style have no validated preset on the shipped model: plain FlowEdit, its base
    assert edit_toy.options_for(routed, "style") == configs["flowedit"]
    # the plain preset row skips such pairs; other rows pass through unchanged
    assert edit_toy.options_for(configs["preset"], "style") is None
    assert edit_toy.options_for(configs["flowedit"], "style") == configs["flowedit"]


def test_the_preset_router_is_judged_overall_but_never_chosen_per_type():
    router = _entry(edit_toy.ROUTED, 1.0, 90.0, 40.0, 3.0, 120)
    chosen = edit_toy.choose_per_type([*SUMMARY, router])
    assert all(c["config"] != edit_toy.ROUTED for c in chosen.values())
    bars = edit_toy.verdicts([*SUMMARY, router])
    assert bars["beats_references_on_keep_at_equal_or_better_accuracy"][0] == edit_toy.ROUTED


def test_pairs_can_start_past_the_ones_presets_were_chosen_on(tmp_path, monkeypatch):
    """``--first-pair 3000``: pairs 3000.., sharded by index like the others, and merged as such."""
    assert edit_toy.pair_indices(10, (1, 2), first=3000) == [3001, 3003, 3005, 3007, 3009]
    assert edit_toy.pair_indices(4) == [0, 1, 2, 3]
    specs = edit_toy.pair_specs(5, first=3000)
    assert [s[1] for s in specs] == ["product", "color", "material", "background", "style"]
    assert [s[0] for s in specs] == [3000, 3001, 3002, 3003, 3004]
    written = {}
    monkeypatch.setattr(
        edit_toy, "write_results", lambda out, settings, rows, random_model: written.update(rows=rows)
    )
    settings = {"model": "m", "pairs": 2, "first_pair": 3000}
    for name, pair in (("a", 3000), ("b", 3001)):
        (tmp_path / name).mkdir()
        rows = [{"config": "baseline", "pair": pair, "type": "color"}]
        (tmp_path / name / "edit_toy.json").write_text(
            json.dumps({"settings": {**settings, "shard": name}, "rows": rows})
        )
    edit_toy.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert [r["pair"] for r in written["rows"]] == [3000, 3001]
    with pytest.raises(SystemExit, match=r"miss pairs \[3001\]"):
        edit_toy.merge([tmp_path / "a"], tmp_path / "out")
