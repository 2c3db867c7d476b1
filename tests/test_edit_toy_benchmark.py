"""The editing benchmark's decision rules: how presets are chosen and how the issue's bars are judged."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "edit_toy.py"
spec = importlib.util.spec_from_file_location("edit_toy", SCRIPT)
edit_toy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(edit_toy)


def _entry(name, acc, keep, psnr, seconds, rows, style_psnr=None):
    by_type = {"color": {"psnr": psnr, "keep_psnr": keep, "attr_acc": acc},
               "style": {"psnr": style_psnr if style_psnr is not None else psnr, "keep_psnr": None,
                         "attr_acc": acc}}
    return {"config": name, "pairs": 100, "psnr": psnr, "keep_psnr": keep, "attr_acc": acc,
            "seconds": seconds, "row_evaluations": rows, "by_type": by_type}


SUMMARY = [
    _entry("baseline", 0.5, 20.0, 18.0, 4.0, 90),
    _entry("flowedit", 0.6, 21.0, 18.5, 3.0, 120),
    _entry("keeps-but-does-not-edit", 0.1, 40.0, 17.0, 2.0, 40),
    _entry("edits-and-keeps", 0.6, 30.0, 19.0, 3.5, 120, style_psnr=10.0),
    _entry("fast", 0.55, 22.0, 18.2, 1.5, 40, style_psnr=20.0),
    _entry("flowedit+oracle-mask", 1.0, 60.0, 30.0, 3.0, 120),
    _entry("preset", 1.0, 60.0, 30.0, 3.0, 120),
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
