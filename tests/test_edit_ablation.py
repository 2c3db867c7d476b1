"""The ablation benchmark's pure parts: configurations, mean ± std over seeds, effects and the table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))  # the script imports edit_toy's helpers as its neighbour
spec = importlib.util.spec_from_file_location("edit_ablation", BENCH / "edit_ablation.py")
edit_ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(edit_ablation)


def _row(config, seed, pair, keep, acc, psnr=15.0, seconds=2.0):
    return {"config": config, "seed": seed, "pair": pair, "type": "color", "psnr": psnr,
            "keep_psnr": keep, "attr_acc": acc, "warp_error": 1.0, "seconds": seconds}


# base keeps 20/22 dB (seed 0/1); +kv adds 1 then 3 dB; all vs all-kv differ by 2 dB on both seeds
ROWS = [
    _row("base", 0, 0, 20.0, 0.0), _row("base", 0, 1, 20.0, 1.0),
    _row("base", 1, 0, 22.0, 0.0), _row("base", 1, 1, 22.0, 0.0),
    _row("+kv", 0, 0, 21.0, 1.0), _row("+kv", 0, 1, 21.0, 1.0),
    _row("+kv", 1, 0, 25.0, 0.0), _row("+kv", 1, 1, 25.0, None),
    _row("all", 0, 0, 40.0, 0.0), _row("all", 1, 0, 40.0, 0.0),
    _row("all-kv", 0, 0, 38.0, 0.0), _row("all-kv", 1, 0, 38.0, 0.0),
]


def test_configurations_turn_each_control_on_and_off():
    configs = edit_ablation.configurations()
    assert len(configs) == 2 + 2 * len(edit_ablation.CONTROLS)
    assert configs["base"] == set() and configs["+solver"] == {"solver"}
    # removing blending removes the controls that act on its mask; adding them brings blending along
    assert configs["all-blend"] == set(edit_ablation.CONTROLS) - {"blend", "auto-mask", "composite"}
    assert configs["+composite"] == {"blend", "composite"} and configs["all-composite"] != configs["all"]
    assert len({frozenset(c) for c in configs.values()}) == len(configs)  # no two rows alike
    full = edit_ablation.options_for(configs["all"], 10)
    assert full["mask"] == "auto" and full["blend"].pixel_composite and full["inversion_solver"] == "fireflow"
    assert edit_ablation.options_for(configs["+composite"], 10)["mask"] == "oracle"
    assert "blend" not in edit_ablation.options_for(configs["all-blend"], 10)
    with pytest.raises(ValueError, match="unknown control"):
        edit_ablation.options_for({"lora"}, 10)
    with pytest.raises(ValueError, match="turn 'blend' on"):
        edit_ablation.options_for({"composite"}, 10)


def test_mean_and_std_are_over_seeds_of_per_seed_means():
    agg = edit_ablation.aggregate(ROWS)
    assert agg["base"]["keep_psnr"] == {"mean": 21.0, "std": pytest.approx(1.4142, abs=1e-4), "seeds": 2}
    # accuracy: seed 0 reads 1 of 2, seed 1 none; a None (unread) row is left out of its seed's mean
    assert agg["base"]["attr_acc"]["mean"] == 0.25 and agg["+kv"]["attr_acc"]["mean"] == 0.5
    assert agg["base"]["pairs"] == 2 and agg["all"]["pairs"] == 1


def test_effects_are_on_minus_off_per_seed():
    eff = edit_ablation.effects(ROWS)
    added = eff["kv"]["added to base"]["keep_psnr"]
    assert added["mean"] == 2.0 and added["std"] == pytest.approx(1.4142, abs=1e-4)  # +1 and +3 dB
    removed = eff["kv"]["removed from all"]["keep_psnr"]
    assert removed == {"mean": 2.0, "std": 0.0, "seeds": 2}
    assert "inject" not in eff  # no rows for it: no entry rather than a made-up zero
    # a control that needs blending is compared with blending alone when added
    extra = [_row("+blend", 0, 0, 24.0, 0.0), _row("+composite", 0, 0, 30.0, 0.0)]
    assert edit_ablation.effects(extra)["composite"]["added to base"]["keep_psnr"]["mean"] == 6.0


def test_the_table_shows_mean_plus_minus_std(tmp_path):
    lines = edit_ablation.table(edit_ablation.aggregate(ROWS), edit_ablation.effects(ROWS))
    text = "\n".join(lines)
    assert "| base | 2 | 15.00 ± 0.00 | 21.00 ± 1.41 | 0.250 ± 0.354 |" in text
    assert "| kv | added to base | +2.00 ± 1.41 |" in text
    assert "| kv | removed from all | +2.00 ± 0.00 |" in text
    identity = [{**_row("identity", 0, 0, 100.0, 0.0), "seed": None}]
    settings = {"model": "fake", "pairs": 2}
    edit_ablation.write_results(tmp_path, settings, ROWS + identity, random_model=True)
    md = (tmp_path / "edit_ablation.md").read_text()
    assert "RANDOM WEIGHTS" in md and "identity` accuracy: 0.000" in md
    assert (tmp_path / "edit_ablation.png").stat().st_size > 1000
