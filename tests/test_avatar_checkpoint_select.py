"""``benchmarks/avatar_checkpoint_select.py``: the rule that picks a DualForce checkpoint on validation
clips never presents a checkpoint that misses a bar as chosen."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the script imports avatar_context_noise and _results as neighbours
spec = importlib.util.spec_from_file_location(
    "avatar_checkpoint_select", BENCHMARKS / "avatar_checkpoint_select.py"
)
select = importlib.util.module_from_spec(spec)
spec.loader.exec_module(select)

BAR_R, BAR_FVD = 0.17, 3.4


def _row(step: int, r: float, within: int, identity: float, fvd: float) -> dict:
    row = {
        "step": step,
        "lip_sync_corr": r,
        "within_1": within,
        "identity_ratio_30s": identity,
        "fvd_toy": fvd,
    }
    row["missed"] = select.missed_bars(row, BAR_R, BAR_FVD, clips=6)
    return row


def test_each_bar_is_judged_on_its_own_side():
    assert _row(1, 0.2, 5, 1.0, 3.4)["missed"] == []
    assert _row(1, 0.1, 4, 1.1, 3.5)["missed"] == ["lip-sync", "lags", "identity", "fvd_toy"]


def test_the_lag_bar_is_five_sixths_of_the_clips():
    row = {"lip_sync_corr": 0.2, "identity_ratio_30s": 1.0, "fvd_toy": 3.0}
    assert select.missed_bars({**row, "within_1": 20}, BAR_R, BAR_FVD, clips=24) == []
    assert select.missed_bars({**row, "within_1": 19}, BAR_R, BAR_FVD, clips=24) == ["lags"]


def test_a_checkpoint_meeting_every_bar_is_chosen_over_higher_sync_that_misses_one():
    rows = [_row(1000, 0.40, 6, 1.2, 3.0), _row(2000, 0.20, 5, 0.9, 3.0), _row(3000, 0.25, 6, 0.95, 3.3)]
    chosen, candidate = select.choose(rows)
    assert chosen is candidate and chosen["step"] == 3000


def test_where_none_meets_every_bar_nothing_is_chosen_and_the_candidate_keeps_sync():
    rows = [
        _row(1000, 0.10, 6, 0.90, 3.0),  # the best identity, but no lip-sync: never the candidate
        _row(2000, 0.30, 6, 1.20, 9.0),
        _row(3000, 0.25, 5, 1.05, 12.0),
    ]
    chosen, candidate = select.choose(rows)
    assert chosen is None and candidate["step"] == 3000 and candidate["missed"] == ["identity", "fvd_toy"]
    assert select.choose([_row(1000, 0.10, 6, 0.9, 3.0)]) == (None, None)


def test_the_standard_error_of_a_clip_mean_uses_the_sample_spread():
    """avatar_context_noise's tables carry the standard error of identity (6 clips spread 0.6-2.1)."""
    import avatar_context_noise

    summary = {"identity_ratio_30s": {"mean": 1.0, "std": 0.5, "n": 5}, "fvd_toy": {"value": 3.0}}
    assert avatar_context_noise._standard_error(summary, "identity_ratio_30s") == 0.25  # 0.5 / sqrt(4)
    assert avatar_context_noise._standard_error(summary, "fvd_toy") is None  # a set-level value
    assert avatar_context_noise._standard_error({"x": {"mean": 1.0, "std": 0.0, "n": 1}}, "x") is None


def test_a_setting_reads_as_the_sampler_arguments_and_switches_as_flags():
    import avatar_context_noise

    assert avatar_context_noise.sampling("0.5:2.5") == {
        "context_sigma": 0.5,
        "audio_guidance": 2.5,
        "steps": None,
    }
    assert avatar_context_noise.sampling("0:") == {"context_sigma": 0.0, "audio_guidance": 1.0, "steps": None}
    assert avatar_context_noise.sampling("0.5:4:16")["steps"] == 16
    flags = avatar_context_noise._flags(
        {"run": "R", "raw": True, "export": None, "quiet": False, "model": ["a=b"]}
    )
    assert flags == ["--run R", "--raw", "--model a=b"]
