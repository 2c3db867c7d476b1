"""``benchmarks/toy_quality.py``'s T2V records: every prompt's asked and read values, the misreading
summary, and the samples picture, on the packaged toy model at a few steps."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "toy_quality.py"
spec = importlib.util.spec_from_file_location("toy_quality", SCRIPT)
toy_quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(toy_quality)
MODEL = Path(__file__).resolve().parent.parent / "flowstudio" / "assets" / "toy-shapes"


def _item(color, read_color, shape="ball", read_shape="ball"):
    return {
        "prompt": "p",
        "color": {"expected": color, "read": read_color},
        "shape": {"expected": shape, "read": read_shape},
        "background": {"expected": "plain", "read": "plain"},
    }


def test_misreadings_count_accuracy_per_value_and_the_common_errors():
    items = [_item("red", "orange"), _item("red", "orange"), _item("red", "red"), _item("blue", "blue")]
    summary = toy_quality.misreadings(items)
    assert summary["color"]["accuracy_by_value"] == {"blue": [1, 1], "red": [1, 3]}
    assert summary["color"]["top_errors"] == [["red", "orange", 2]]
    assert summary["color"]["most_read"][0] == ("orange", 2)
    assert summary["shape"]["top_errors"] == []


@pytest.mark.skipif(not (MODEL / "model_index.json").exists(), reason="packaged toy model missing")
def test_t2v_records_what_was_asked_and_read_and_draws_the_samples(tmp_path):
    from flowstudio.pipeline import WanVideoPipeline

    torch.set_grad_enabled(False)
    try:
        pipe = WanVideoPipeline.from_pretrained(MODEL, device="cpu")
        accuracy, seconds, items, samples = toy_quality.t2v_quality(pipe, prompts=2, steps=2, guidance=5.0)
    finally:
        torch.set_grad_enabled(True)
    assert len(items) == len(seconds) == len(samples) == 2
    for name in toy_quality.READERS:
        hits = sum(item[name]["read"] == item[name]["expected"] for item in items)
        assert accuracy[name]["hits"] == hits and accuracy[name]["n"] == 2
    expected_spec, expected_text = toy_quality.held_out(100_000)
    assert items[0]["prompt"] == expected_text and items[0]["color"]["expected"] == expected_spec.color
    assert samples[0].ndim == 3 and samples[0].shape[-1] == 3
    toy_quality.plot_samples(samples, items, tmp_path / "samples.png")
    assert (tmp_path / "samples.png").stat().st_size > 0
    result = {
        "settings": {},
        "vae": {"clips": 0},
        "t2v_accuracy": accuracy,
        "i2v_psnr_db": float("nan"),
        "seconds_per_clip": None,
        "t2v_misreadings": toy_quality.misreadings(items),
    }
    assert "## T2V misreadings" in toy_quality.table(result, "t")


def test_the_vae_of_a_run_in_progress_is_measured_from_its_stage_checkpoint(tmp_path):
    """``--vae-state RUN``: the VAE stage's checkpoint (the trainer's format) is what reconstructs."""
    from flowstudio.worlds.train_shapes import Budget, ShapesTrainConfig, train_shapes

    tiny = ShapesTrainConfig(
        num_layers=1, num_attention_heads=2, attention_head_dim=8, ffn_dim=32, freq_dim=16, text_dim=16,
        text_encoder_layers=1, text_encoder_heads=2, vae_base_dim=8, vae_decoder_base_dim=8, num_frames=5,
        height=32, width=32, vae_steps=3, vae_batch=1, vae_crop_frames=5, vae_crop_size=32, num_clips=2,
        stats_clips=2, dit_steps=1, dit_batch=1, checkpoint_every=1, vae_lr=0.05,
    )  # fmt: skip
    run = tmp_path / "run"
    train_shapes(run, tiny, device="cpu", progress=False, budget=Budget(max_steps=2))  # mid VAE stage
    clip = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    trained = toy_quality.run_state_roundtrip(run)(clip)
    from diffusers import AutoencoderKLWan

    from flowstudio.video import frames_to_tensor, tensor_to_frames

    initial = AutoencoderKLWan.from_pretrained(run / "init" / "vae").eval()
    with torch.no_grad():
        untrained = tensor_to_frames(
            initial.decode(initial.encode(frames_to_tensor(clip)).latent_dist.mode()).sample
        )
    assert trained.shape == clip.shape
    assert np.abs(trained.astype(int) - untrained.astype(int)).max() > 0, "the stage's weights, not init's"


def test_the_i2v_row_carries_the_interval_of_its_mean():
    values = [20.0, 22.0, 24.0, 22.0]
    low, high = toy_quality.mean_interval(values)
    half = 1.96 * np.std(values, ddof=1) / 2
    assert (low, high) == (round(22.0 - half, 2), round(22.0 + half, 2))
    assert toy_quality.mean_interval([22.0]) is None
    result = {
        "settings": {},
        "vae": {"clips": 0},
        "t2v_accuracy": {name: toy_quality._proportion(0, 0) for name in toy_quality.READERS},
        "i2v_psnr_db": 22.0,
        "i2v_psnr_db_ci95": [low, high],
        "seconds_per_clip": None,
        "t2v_misreadings": None,
    }
    assert f"| 22.00 [{low}, {high}] | >= 22 |" in toy_quality.table(result, "t")
