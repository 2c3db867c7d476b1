"""The ablation benchmark: configurations, which run once, mean ± std over seeds, effects and the table."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))  # the script imports edit_toy's helpers as its neighbour
spec = importlib.util.spec_from_file_location("edit_ablation", BENCH / "edit_ablation.py")
edit_ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(edit_ablation)


def _row(config, seed, pair, keep, acc, psnr=15.0, seconds=2.0):
    return {
        "config": config,
        "seed": seed,
        "pair": pair,
        "type": "color",
        "psnr": psnr,
        "keep_psnr": keep,
        "attr_acc": acc,
        "warp_error": 1.0,
        "seconds": seconds,
    }


# seed-dependent rows (they use the automatic mask): all keeps 20/22 dB (seed 0/1); all-kv keeps 1 then
# 3 dB less; all-composite 2 dB less on both seeds
ROWS = [
    _row("all", 0, 0, 20.0, 0.0),
    _row("all", 0, 1, 20.0, 1.0),
    _row("all", 1, 0, 22.0, 0.0),
    _row("all", 1, 1, 22.0, 0.0),
    _row("all-kv", 0, 0, 19.0, 1.0),
    _row("all-kv", 0, 1, 19.0, 1.0),
    _row("all-kv", 1, 0, 19.0, 0.0),
    _row("all-kv", 1, 1, 19.0, None),
    _row("all-composite", 0, 0, 18.0, 0.0),
    _row("all-composite", 1, 0, 20.0, 0.0),
]


def test_configurations_turn_each_control_on_and_off():
    configs = edit_ablation.configurations()
    assert len(configs) == 2 + 2 * len(edit_ablation.CONTROLS) + len(edit_ablation.EXTRAS) == 17
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


def test_the_change_composite_is_added_to_the_base_only():
    from flowstudio.edit import BlendConfig

    configs = edit_ablation.configurations()
    assert configs["+change-composite"] == {"change-composite"}
    assert "change-composite" not in configs["all"] and "all-change-composite" not in configs
    options = edit_ablation.options_for(configs["+change-composite"], 10)
    # the base editor plus edit_toy's change composite: no mask, no latent blending
    base = edit_ablation.options_for(configs["base"], 10)
    assert {k: v for k, v in options.items() if k != "blend"} == base and "mask" not in options
    assert options["blend"] == BlendConfig(
        strength=0.0,
        pixel_composite=True,
        composite_mask="change",
        change_threshold=0.2,
        change_blur=5,
        change_grow=3,
    )
    assert options["blend"] == edit_ablation.CHANGE_COMPOSITE  # the same setting as edit_toy's rows
    with pytest.raises(ValueError, match="without 'blend'"):
        edit_ablation.options_for({"change-composite", "blend"}, 10)
    rows = [_row("base", 0, 0, 20.0, 0.0), _row("+change-composite", 0, 0, 26.0, 0.0)]
    eff = edit_ablation.effects(rows)["change-composite"]
    assert list(eff) == ["added to base"] and eff["added to base"]["keep_psnr"]["mean"] == 6.0


def test_only_the_configurations_that_draw_noise_run_per_seed():
    configs = edit_ablation.configurations()
    per_seed = {
        name for name, controls in configs.items() if edit_ablation.seeds_for(controls, 3) == [0, 1, 2]
    }
    # the automatic mask is the only control here that draws from the seed
    assert per_seed == {name for name, controls in configs.items() if "auto-mask" in controls}
    assert per_seed == {
        "+auto-mask",
        "all",
        "all-kv",
        "all-inject",
        "all-composite",
        "all-reschedule",
        "all-solver",
    }
    assert edit_ablation.seeds_for(configs["base"], 3) == [0]
    assert edit_ablation.seeds_for(configs["all-auto-mask"], 3) == [0]  # true masks: nothing random
    assert edit_ablation.seeds_for(configs["+change-composite"], 3) == [0]  # no mask needed
    assert edit_ablation.run_once(["base", "+blend", "all", "not-a-config"]) == {"base", "+blend"}


def test_the_seed_dependence_rule_follows_every_random_draw_of_edit():
    from flowstudio.edit import BlendConfig, RescheduleConfig, depends_on_seed, resolve_settings

    def settings(**options):
        return resolve_settings(source_prompt="a red ball", target_prompt="a blue ball", **options)

    assert not depends_on_seed(settings(method="inversion"))
    assert not depends_on_seed(settings(method="fireflow", reschedule=RescheduleConfig(strength=0.8)))
    assert depends_on_seed(settings(method="flowedit"))  # fresh noise every step
    assert depends_on_seed(settings(reschedule=RescheduleConfig(strength=0.8, mode="noise")))  # SDEdit
    assert depends_on_seed(settings(blend=BlendConfig()))  # blending without a mask: the auto mask
    assert depends_on_seed(settings(), mask="auto")  # mask="auto" turns blending on
    assert not depends_on_seed(settings(blend=BlendConfig()), mask="mask.png")
    assert not depends_on_seed(settings(), box=(0, 0, 8, 8))
    change = BlendConfig(strength=0.0, pixel_composite=True, composite_mask="change")
    assert not depends_on_seed(settings(blend=change))  # a change composite needs no blending mask


def test_mean_and_std_are_over_seeds_of_per_seed_means():
    agg = edit_ablation.aggregate(ROWS)
    assert agg["all"]["keep_psnr"] == {"mean": 21.0, "std": pytest.approx(1.4142, abs=1e-4), "seeds": 2}
    # accuracy: seed 0 reads 1 of 2, seed 1 none; a None (unread) row is left out of its seed's mean
    assert agg["all"]["attr_acc"]["mean"] == 0.25 and agg["all-kv"]["attr_acc"]["mean"] == 0.5
    assert agg["all"]["pairs"] == 2 and agg["all-composite"]["pairs"] == 1
    assert agg["all"]["runs"] == "per seed"


def test_effects_are_on_minus_off_per_seed():
    eff = edit_ablation.effects(ROWS)
    removed = eff["kv"]["removed from all"]["keep_psnr"]
    assert removed["mean"] == 2.0 and removed["std"] == pytest.approx(1.4142, abs=1e-4)  # +1 and +3 dB
    assert eff["composite"]["removed from all"]["keep_psnr"] == {"mean": 2.0, "std": 0.0, "seeds": 2}
    assert eff["kv"]["removed from all"]["runs"] == "per seed"
    assert "inject" not in eff  # no rows for it: no entry rather than a made-up zero


# deterministic rows (no automatic mask), as a resumed run holds them: base at seeds 0-2 (repeats of one
# edit, made before such configurations ran once), +blend and +kv at seed 0 only
ONCE_ROWS = [
    *(_row("base", s, p, 20.0 + p, 0.0) for s in range(3) for p in range(2)),
    _row("+kv", 0, 0, 23.0, 0.0),
    _row("+kv", 0, 1, 23.0, 0.0),
    _row("+blend", 0, 0, 24.0, 0.0),
    _row("+blend", 0, 1, 24.0, 0.0),
    _row("+auto-mask", 0, 0, 25.0, 0.0),
    _row("+auto-mask", 0, 1, 25.0, 0.0),
    _row("+auto-mask", 1, 0, 27.0, 0.0),
    _row("+auto-mask", 1, 1, 27.0, 0.0),
]


def test_a_deterministic_configuration_counts_once_and_says_so():
    agg = edit_ablation.aggregate(ONCE_ROWS)
    # base's seed-1/2 rows repeat seed 0's edit: one value per pair, spread 0 by construction
    assert agg["base"]["keep_psnr"] == {"mean": 20.5, "std": 0.0, "seeds": 1}
    assert agg["base"]["runs"] == "once: deterministic" and agg["base"]["pairs"] == 2
    assert agg["+auto-mask"]["keep_psnr"] == {
        "mean": 26.0,
        "std": pytest.approx(1.4142, abs=1e-4),
        "seeds": 2,
    }
    assert [r["seed"] for r in edit_ablation.drop_repeats(ONCE_ROWS) if r["config"] == "base"] == [0, 0]
    eff = edit_ablation.effects(ONCE_ROWS)
    # both sides run once: one difference, no spread
    both = eff["kv"]["added to base"]
    assert (
        both["keep_psnr"] == {"mean": 2.5, "std": 0.0, "seeds": 1} and both["runs"] == "once: deterministic"
    )
    # the off side (+blend) run once: its one value enters each of the on side's seeds (+1, +3 dB)
    auto = eff["auto-mask"]["added to base"]
    assert auto["runs"] == "off run once"
    assert auto["keep_psnr"] == {"mean": 2.0, "std": pytest.approx(1.4142, abs=1e-4), "seeds": 2}


def test_pair_intervals_resample_pairs_of_seed_averaged_effects():
    # 40 pairs: +kv keeps exactly 2 dB more than base on every pair (a sure effect), and reads the
    # target on the same pairs as base except one (an effect of +1 pair in 40: the interval holds 0)
    rows = [_row("base", 0, p, 20.0, 1.0 if p < 10 else 0.0) for p in range(40)]
    rows += [_row("+kv", 0, p, 22.0, 1.0 if p < 11 else 0.0) for p in range(40)]
    # the automatic mask draws noise: two seeds averaged per pair (+1 and +3 dB over +blend -> +2)
    rows += [_row("+blend", 0, p, 20.0, None) for p in range(40)]
    rows += [_row("+auto-mask", s, p, 21.0 + 2 * s, None) for s in (0, 1) for p in range(40)]
    intervals = edit_ablation.pair_intervals(rows)
    keep = intervals["kv"]["added to base"]["keep_psnr"]
    assert keep == {"mean": 2.0, "low": 2.0, "high": 2.0, "n": 40}
    acc = intervals["kv"]["added to base"]["attr_acc"]
    assert acc["mean"] == 0.025 and acc["low"] == 0.0 and acc["high"] > 0.0 and acc["n"] == 40
    auto = intervals["auto-mask"]["added to base"]
    assert auto["keep_psnr"]["mean"] == 2.0 and "attr_acc" not in auto, "no reader: no accuracy interval"
    text = "\n".join(edit_ablation.interval_table(intervals))
    assert "| kv | added to base | +2.00 [+2.00, +2.00] * | +0.025 [+0.000, " in text
    assert "| auto-mask | added to base | +2.00 [+2.00, +2.00] * | - | - |" in text


def test_a_repeat_that_differs_from_seed_0_is_warned_about(caplog):
    rows = [_row("base", 0, 0, 20.0, 0.0), _row("base", 1, 0, 21.0, 0.0)]
    with caplog.at_level("WARNING"):
        kept = edit_ablation.drop_repeats(rows)
    assert kept == rows[:1] and "seed 1 scores differ from seed 0's" in caplog.text


def test_the_table_shows_mean_plus_minus_std(tmp_path):
    lines = edit_ablation.table(edit_ablation.aggregate(ROWS), edit_ablation.effects(ROWS))
    text = "\n".join(lines)
    assert "| all | 2 | 2 | 15.00 ± 0.00 | 21.00 ± 1.41 | 0.250 ± 0.354 |" in text
    assert "| kv | removed from all | 2 | +2.00 ± 1.41 |" in text
    assert "| composite | removed from all | 2 | +2.00 ± 0.00 |" in text
    once = "\n".join(
        edit_ablation.table(edit_ablation.aggregate(ONCE_ROWS), edit_ablation.effects(ONCE_ROWS))
    )
    assert "| base | deterministic: run once | 2 | 15.00 ± 0.00 | 20.50 ± 0.00 |" in once
    assert "| kv | added to base | both deterministic: run once | +2.50 ± 0.00 |" in once
    assert "| auto-mask | added to base | 2 (off: deterministic: run once) | +2.00 ± 1.41 |" in once
    identity = [{**_row("identity", 0, 0, 100.0, 0.0), "seed": None}]
    settings = {"model": "fake", "pairs": 2}
    edit_ablation.write_results(tmp_path, settings, ROWS + identity, random_model=True)
    md = (tmp_path / "edit_ablation.md").read_text()
    assert "RANDOM WEIGHTS" in md and "identity` accuracy: 0.000" in md
    assert (tmp_path / "edit_ablation.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def tiny_pipe(tiny_checkpoint):
    import torch

    from flowstudio.pipeline import WanVideoPipeline

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model is latency-bound; a shared machine's threads only wait
    yield WanVideoPipeline.from_pretrained(tiny_checkpoint, device="cpu")
    torch.set_num_threads(before)


def test_a_configuration_called_deterministic_gives_one_edit_for_two_seeds(tiny_pipe):
    import torch

    pair = edit_ablation.make_pairs(1, 5, 32)[0]
    configs = edit_ablation.configurations()
    once = edit_ablation.run_once(configs)
    assert once  # the rule leaves something to check
    for name in sorted(once):
        options = edit_ablation.options_for(configs[name], 2)
        first, _ = edit_ablation.edit_pair(tiny_pipe, pair, options, seed=0, device="cpu")
        other, _ = edit_ablation.edit_pair(tiny_pipe, pair, options, seed=7, device="cpu")
        assert torch.equal(first.latents, other.latents), f"{name}: seeds 0 and 7 gave different latents"
        assert np.array_equal(first.frames, other.frames), f"{name}: seeds 0 and 7 gave different frames"


def test_the_run_edits_a_seed_dependent_configuration_per_seed_and_a_deterministic_one_once(
    tiny_checkpoint, tmp_path, monkeypatch
):
    out = tmp_path / "ablation"
    argv = [
        "edit_ablation.py",
        "--model",
        str(tiny_checkpoint),
        "--pairs",
        "1",
        "--seeds",
        "2",
        "--steps",
        "2",
        "--frames",
        "5",
        "--size",
        "32",
        "--configs",
        "base",
        "+auto-mask",
        "--out",
        str(out),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    edit_ablation.main()
    lines = (out / "edit_ablation_progress.jsonl").read_text().splitlines()[1:]
    made = sorted((r["config"], r["seed"]) for r in map(json.loads, lines) if r["config"] != "identity")
    assert made == [("+auto-mask", 0), ("+auto-mask", 1), ("base", 0)]
    result = json.loads((out / "edit_ablation.json").read_text())
    assert result["settings"]["run_once"] == ["base"]
    assert result["aggregate"]["base"]["runs"] == "once: deterministic"
    assert result["aggregate"]["+auto-mask"]["psnr"]["seeds"] == 2
    assert "| base | deterministic: run once |" in (out / "edit_ablation.md").read_text()


def test_the_vae_cache_changes_no_result_and_rows_keep_the_cost_of_an_edit_alone(tiny_pipe):
    from flowstudio.pipeline import WanVideoPipeline

    pair = edit_ablation.make_pairs(1, 5, 32)[0]
    configs = edit_ablation.configurations()
    cached = WanVideoPipeline(tiny_pipe.components, device="cpu", vae_cache_bytes=2**24)
    _, blend = edit_ablation.edit_pair(
        cached, pair, edit_ablation.options_for(configs["+blend"], 2), seed=0, device="cpu"
    )
    assert blend["vae_cached_seconds"] == 0.0  # the first edit of the pair computes everything
    composite = edit_ablation.options_for(configs["+composite"], 2)
    result, row = edit_ablation.edit_pair(cached, pair, composite, seed=0, device="cpu")
    expected, plain = edit_ablation.edit_pair(tiny_pipe, pair, composite, seed=0, device="cpu")
    assert np.array_equal(result.frames, expected.frames)
    assert all(row[m] == plain[m] for m in ("psnr", "keep_psnr", "attr_read", "warp_error"))
    # the source's encoding and +blend's decoding (the same latents: the composite acts on pixels) were
    # served from the cache; their compute time is in the row's seconds
    assert cached.vae_cache.hits == 2 and row["vae_cached_seconds"] > 0.0
    assert row["seconds"] >= row["vae_cached_seconds"]
