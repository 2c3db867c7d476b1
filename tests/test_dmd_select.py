"""``benchmarks/dmd_select.py``: the rule that picks a student before the report, and its summary."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the script imports toy_quality and _results as its neighbours
spec = importlib.util.spec_from_file_location("dmd_select", BENCHMARKS / "dmd_select.py")
dmd_select = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dmd_select)


def _summary(color: float, shape: float, background: float) -> dict:
    return {"color": {"value": color}, "shape": {"value": shape}, "background": {"value": background}}


def test_the_largest_worst_margin_wins_among_candidates_within_the_margin_on_every_attribute():
    summaries = {
        "teacher": _summary(0.76, 0.53, 0.91),
        "bright_but_no_backdrop": _summary(0.85, 0.60, 0.80),  # background 11 under: never eligible
        "edge": _summary(0.71, 0.48, 0.86),  # exactly 5 under on each: eligible, margin 0
        "balanced": _summary(0.75, 0.52, 0.90),
    }
    chosen, slack = dmd_select.choose(summaries, 0.05)
    assert chosen == "balanced"
    assert abs(slack["edge"]) < 1e-9 and slack["bright_but_no_backdrop"] < 0


def test_a_tie_on_the_worst_margin_goes_to_the_better_second_worst_whatever_the_order():
    teacher = _summary(0.792, 0.550, 0.888)  # the 600-prompt reads of 2026-12-03, as fractions of 600
    a = _summary(0.762, 0.528, 0.858)  # margins +2.0 (colour), +2.8 (shape), +2.0 (background)
    b = _summary(0.765, 0.523, 0.858)  # margins +2.3, +2.3, +2.0: same worst, better second-worst
    for order in (("a", "b"), ("b", "a")):
        summaries = {"teacher": teacher, **{n: {"a": a, "b": b}[n] for n in order}}
        chosen, slack = dmd_select.choose(summaries, 0.05)
        assert chosen == "b"
        assert slack["a"] == slack["b"]


def test_no_candidate_within_the_margin_is_reported_as_none_not_the_least_bad():
    summaries = {
        "teacher": _summary(0.8, 0.6, 0.9),
        "a": _summary(0.7, 0.6, 0.9),
        "b": _summary(0.8, 0.4, 0.9),
    }
    chosen, slack = dmd_select.choose(summaries, 0.05)
    assert chosen is None
    assert max(slack.values()) < 0


def test_the_summary_counts_background_reads_per_backdrop():
    rows = [
        {"backdrop": "plain", "color": True, "shape": False, "background": False},
        {"backdrop": "plain", "color": True, "shape": True, "background": True},
        {"backdrop": "wood", "color": False, "shape": True, "background": True},
    ]
    summary = dmd_select.summarise({"rows": rows})
    assert summary["color"]["hits"] == 2 and summary["color"]["n"] == 3
    assert summary["background_by_backdrop"] == {"plain": [1, 2], "wood": [1, 1]}
    low, high = summary["shape"]["ci95"]
    assert low < 2 / 3 < high


def test_a_clip_without_an_object_reads_wrong_instead_of_stopping_the_run(speck_clip):
    from flowstudio.distill.monitor import eval_specs

    spec, _ = eval_specs(1)[0]
    assert dmd_select.reads_right(speck_clip, spec, "shape") is False
