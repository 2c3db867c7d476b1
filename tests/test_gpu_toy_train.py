"""benchmarks/gpu_toy_train.py: the sizing arithmetic, and the whole command on the CPU (``--tiny``)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling _results
    spec = importlib.util.spec_from_file_location("gpu_toy_train", BENCHMARKS / "gpu_toy_train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TIMINGS = {"vae_crop_step_s": 0.2, "vae_full_clip_step_s": 0.4, "latent_clip_s": 0.05, "dit_step_s": 0.1}


def _predicted(config, timings: dict[str, float]) -> tuple[float, float, float]:
    crop = config.vae_steps - config.vae_full_clip_steps
    vae = crop * timings["vae_crop_step_s"] + config.vae_full_clip_steps * timings["vae_full_clip_step_s"]
    cache = (config.num_clips + config.stats_clips) * timings["latent_clip_s"]
    return vae, cache, config.dit_steps * timings["dit_step_s"]


def test_sized_stages_fill_the_time_with_the_recipes_proportions(script: ModuleType) -> None:
    from flowstudio.worlds.train_shapes import ShapesTrainConfig

    recipe = ShapesTrainConfig.from_yaml(BENCHMARKS.parent / "configs" / "toy" / "shapes_gpu.yaml")
    sized = script.size_recipe(recipe, TIMINGS, seconds=600.0, vae_share=0.4)
    vae, cache, dit = _predicted(sized, TIMINGS)
    assert vae + cache + dit == pytest.approx(600.0, abs=1.0), "the three stages must take the given time"
    assert vae == pytest.approx(0.4 * (vae + dit), rel=0.01)
    # the recipe's share of whole-clip VAE steps is kept
    assert sized.vae_full_clip_steps / sized.vae_steps == pytest.approx(
        recipe.vae_full_clip_steps / recipe.vae_steps, abs=0.01
    )
    assert cache <= 0.2 * 600.0 + 1e-9, "the latent cache may take at most its share"
    assert sized.num_clips < recipe.num_clips  # 4000 clips at 0.05 s would take a third of the time
    untouched = {f for f in recipe.__dataclass_fields__ if f not in script.SIZED_FIELDS}
    assert all(getattr(sized, f) == getattr(recipe, f) for f in untouched)


def test_a_fast_cache_keeps_the_recipes_clip_count(script: ModuleType) -> None:
    from flowstudio.worlds.train_shapes import ShapesTrainConfig

    recipe = ShapesTrainConfig.from_yaml(BENCHMARKS.parent / "configs" / "toy" / "shapes_gpu.yaml")
    sized = script.size_recipe(recipe, {**TIMINGS, "latent_clip_s": 0.001}, seconds=600.0, vae_share=0.4)
    assert sized.num_clips == recipe.num_clips


MINUTES = 1.0  # the tiny run's budget


def test_tiny_run_trains_exports_and_reports(script: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "run"
    record = script.main(
        [
            "--device",
            "cpu",
            "--tiny",
            "--minutes",
            # 1 minute, not 0.5: on a loaded 2-core machine the probe alone took 16 s and the 30 s budget
            # left no training time (CI of stop 55, three processes on two cores)
            str(MINUTES),
            "--probe-steps",
            "2",
            "5",
            "--probe-dit-batches",
            "4",
            "--set",
            "dit_lr=1e-4",
            "--out",
            str(out),
            "--results",
            str(tmp_path / "results"),
        ]
    )
    assert record["model_dir"] is not None and (Path(record["model_dir"]) / "model_index.json").exists()
    for key in ("vae_crop_step_s", "vae_full_clip_step_s", "latent_clip_s", "dit_step_s"):
        assert record["probe"][key] > 0, key
    assert set(record["probe"]["dit_step_s_by_batch"]) == {2, 4}  # the tiny recipe's batch, and the one asked
    assert record["settings"]["overrides"]["dit_lr"] == 1e-4
    sized = record["settings"]["sized"]
    assert sized["vae_steps"] >= 1 and sized["dit_steps"] >= 1
    written = json.loads((tmp_path / "results" / "gpu_toy_train.json").read_text())
    assert written["settings"]["sized"] == sized
    recipe = (out / "sized_recipe.yaml").read_text()
    assert f"dit_steps: {sized['dit_steps']}" in recipe and "dit_lr: 0.0001" in recipe
    assert record["total_seconds"] < MINUTES * 60 + 20, "the hard stop keeps the command near its budget"


def test_overrides_are_read_as_yaml_and_malformed_ones_refused(script: ModuleType) -> None:
    assert script.parse_overrides(["dit_batch=256", "dit_lr=6e-4", "vae_autocast=float32"]) == {
        "dit_batch": 256,
        "dit_lr": 6e-4,
        "vae_autocast": "float32",
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        script.parse_overrides(["dit_batch"])
