"""Toy-model training: every stage runs, resume equals an uninterrupted run, export loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from flowstudio.errors import InputError
from flowstudio.weights import check_checkpoint, load_components
from flowstudio.worlds.train_shapes import Budget, ShapesTrainConfig, train_shapes

TINY = ShapesTrainConfig(
    num_layers=1,
    num_attention_heads=2,
    attention_head_dim=8,
    ffn_dim=32,
    freq_dim=16,
    text_dim=16,
    text_encoder_layers=1,
    text_encoder_heads=2,
    vae_base_dim=8,
    vae_decoder_base_dim=8,
    num_frames=5,
    height=32,
    width=32,
    vae_steps=2,
    vae_batch=1,
    vae_crop_frames=5,
    vae_crop_size=32,
    num_clips=3,
    stats_clips=2,
    dit_steps=3,
    dit_batch=2,
    checkpoint_every=1,
    log_every=1,
)


def _weights(model_dir):
    return load_file(model_dir / "transformer" / "diffusion_pytorch_model.safetensors")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "straight"
    return out, train_shapes(out, TINY, device="cpu", progress=False)


def test_training_runs_every_stage_and_exports_a_loadable_checkpoint(straight_run):
    out, result = straight_run
    assert result.finished and result.model_dir == out / "model"
    report = check_checkpoint(result.model_dir)
    assert report.ok, report.format()
    components = load_components(result.model_dir, device="cpu")
    assert components.transformer.config.num_layers == 1
    assert components.transformer.dtype == torch.float32  # loaded as fp32 from the fp16 files
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["final_dit_loss"] is not None
    assert (out / "losses.png").exists()
    std = torch.tensor(components.vae.config.latents_std)
    assert std.shape == (48,) and torch.all(std > 0), "latent statistics must be measured and stored"
    assert (result.model_dir / "tokenizer" / "vocabulary.txt").read_text().split()  # the world's words


def test_interrupted_then_resumed_run_equals_the_straight_run(straight_run, tmp_path):
    out = tmp_path / "resumed"
    first = train_shapes(out, TINY, device="cpu", budget=Budget(max_steps=3), progress=False)
    assert not first.finished and first.model_dir is None  # stopped inside the transformer stage
    second = train_shapes(out, TINY, device="cpu", progress=False)
    assert second.finished
    straight, resumed = _weights(straight_run[1].model_dir), _weights(second.model_dir)
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), f"{name} differs after resume"


def test_a_snapshot_of_a_run_in_progress_is_a_loadable_model_of_its_latest_step(straight_run, tmp_path):
    """``export_snapshot``: a run stopped inside the transformer stage exports its latest checkpoint
    (same VAE and latent statistics as the finished run); a run without one is refused."""
    from flowstudio.worlds.train_shapes import export_snapshot

    out = tmp_path / "partial"
    with pytest.raises(InputError, match="missing"):
        export_snapshot(out, tmp_path / "none")
    train_shapes(out, TINY, device="cpu", budget=Budget(max_steps=4), progress=False)  # VAE 2 + DiT 2
    summary = export_snapshot(out, tmp_path / "snapshot")
    assert summary["snapshot_step"] == 2 and summary["dit_steps"] == TINY.dit_steps
    assert not summary["finished"]
    assert check_checkpoint(tmp_path / "snapshot").ok
    saved = torch.load(out / "state" / "dit.pt", weights_only=False)["models"]["dit"]
    exported = _weights(tmp_path / "snapshot")
    for name, value in saved.items():
        assert torch.equal(exported[name], value.half()), name
    finished = load_components(straight_run[1].model_dir, device="cpu").vae.config
    snapshot = load_components(tmp_path / "snapshot", device="cpu").vae.config
    assert snapshot.latents_mean == pytest.approx(finished.latents_mean, abs=1e-6)
    recorded = json.loads((tmp_path / "snapshot" / "training_summary.json").read_text())
    assert recorded["snapshot_step"] == 2


def test_resume_with_another_configuration_is_refused(straight_run):
    out, _ = straight_run
    other = ShapesTrainConfig(**{**TINY.__dict__, "dit_lr": 1e-3})
    with pytest.raises(InputError, match="another configuration"):
        train_shapes(out, other, device="cpu", progress=False)


def test_a_wider_transformer_reuses_the_vae_and_latent_cache_of_a_finished_run(straight_run, tmp_path):
    source, first = straight_run
    wider = ShapesTrainConfig(**{**TINY.__dict__, "num_attention_heads": 4})
    result = train_shapes(tmp_path / "wide", wider, device="cpu", progress=False, reuse_stages_from=source)
    assert result.finished
    summary = json.loads((tmp_path / "wide" / "summary.json").read_text())
    assert summary["final_vae_loss"] == json.loads((source / "summary.json").read_text())["final_vae_loss"]
    old, new = (load_components(r.model_dir, device="cpu") for r in (first, result))
    assert new.transformer.config.num_attention_heads == 4
    for a, b in zip(old.vae.state_dict().values(), new.vae.state_dict().values(), strict=True):
        assert torch.equal(a, b), "the VAE must be the earlier run's"
    old_text, new_text = old.text_encoder.state_dict(), new.text_encoder.state_dict()
    for a, b in zip(old_text.values(), new_text.values(), strict=True):
        assert torch.equal(a, b), "the text encoder made the cached caption states: it must be reused"


def test_a_transformer_starts_from_a_model_folders_vae(straight_run, tmp_path):
    """``vae_from``: a shipped model folder's VAE is the finished VAE stage; the cache is re-encoded."""
    source, first = straight_run
    wider = ShapesTrainConfig(**{**TINY.__dict__, "num_attention_heads": 4})
    result = train_shapes(
        tmp_path / "from-model", wider, device="cpu", progress=False, vae_from=first.model_dir
    )
    assert result.finished
    old, new = (load_components(r.model_dir, device="cpu") for r in (first, result))
    assert new.transformer.config.num_attention_heads == 4
    for a, b in zip(old.vae.state_dict().values(), new.vae.state_dict().values(), strict=True):
        assert torch.equal(a, b), "the VAE must be the model folder's"
    old_text, new_text = old.text_encoder.state_dict(), new.text_encoder.state_dict()
    for a, b in zip(old_text.values(), new_text.values(), strict=True):
        assert torch.equal(a, b), "the text encoder must be the model folder's"
    cached = torch.load(tmp_path / "from-model" / "state" / "latents.pt", weights_only=False)
    reference = torch.load(source / "state" / "latents.pt", weights_only=False)
    assert cached["captions"] == reference["captions"]
    for ours, theirs in zip(cached["latents"], reference["latents"], strict=True):
        assert torch.allclose(ours.float(), theirs.float(), atol=1e-3)
    assert json.loads((result.model_dir / "training_summary.json").read_text())["finished"]


def test_a_model_folders_transformer_is_trained_on_from_the_step_it_reached(straight_run, tmp_path):
    """``dit_from``: the transformer stage resumes at the model's step from its (fp16) weights, with
    fresh AdamW moments, and trains on to the new ``dit_steps``; the VAE is taken as with ``vae_from``."""
    _, first = straight_run
    longer = ShapesTrainConfig(**{**TINY.__dict__, "dit_steps": 5})
    out = tmp_path / "on"
    stopped = train_shapes(
        out, longer, device="cpu", progress=False, dit_from=first.model_dir, budget=Budget(max_steps=0)
    )
    assert not stopped.finished
    taken = torch.load(out / "state" / "dit.pt", weights_only=False)
    assert taken["step"] == TINY.dit_steps
    assert json.loads((out / "summary.json").read_text())["dit_from"] == str(first.model_dir)
    assert taken["optimizers"]["dit"]["state"] == {}
    shipped = _weights(first.model_dir)
    for name, value in taken["models"]["dit"].items():
        assert torch.equal(value, shipped[name].float()), name
    result = train_shapes(out, longer, device="cpu", progress=False, dit_from=first.model_dir)
    assert result.finished
    trained = torch.load(out / "state" / "dit.pt", weights_only=False)
    assert trained["step"] == 5 and len(trained["history"]["loss"]) == 2  # steps 3 and 4 only
    moved = max(
        float((trained["models"]["dit"][k] - v).abs().max()) for k, v in taken["models"]["dit"].items()
    )
    assert moved > 0
    with pytest.raises(InputError, match="set dit_steps above 3"):
        train_shapes(tmp_path / "same", TINY, device="cpu", progress=False, dit_from=first.model_dir)
    wider = ShapesTrainConfig(**{**longer.__dict__, "num_attention_heads": 4})
    with pytest.raises(InputError, match="num_attention_heads"):
        train_shapes(tmp_path / "wide", wider, device="cpu", progress=False, dit_from=first.model_dir)


def test_a_model_folders_vae_is_trained_on_when_vae_steps_is_past_its_step(straight_run, tmp_path):
    """``vae_from`` with ``vae_steps`` past the model's: the VAE stage resumes from the model's VAE at its
    step (fresh AdamW moments) and trains on; the cache and transformer are then made on the new VAE."""
    from safetensors.torch import load_file as load

    _, first = straight_run
    longer = ShapesTrainConfig(**{**TINY.__dict__, "vae_steps": 4, "vae_full_clip_steps": 2})
    out = tmp_path / "vae-on"
    stopped = train_shapes(
        out, longer, device="cpu", progress=False, vae_from=first.model_dir, budget=Budget(max_steps=1)
    )
    assert not stopped.finished
    shipped = load(first.model_dir / "vae" / "diffusion_pytorch_model.safetensors")
    one_step = torch.load(out / "state" / "vae.pt", weights_only=False)
    assert one_step["step"] == TINY.vae_steps + 1 and len(one_step["history"]["loss"]) == 1
    # resumed from the model's weights: one AdamW step from them moves no weight by more than ~lr
    moved = {k: float((v - shipped[k]).abs().max()) for k, v in one_step["models"]["vae"].items()}
    assert 0 < max(moved.values()) <= 1.01 * TINY.vae_lr
    result = train_shapes(out, longer, device="cpu", progress=False, vae_from=first.model_dir)
    assert result.finished
    trained = torch.load(out / "state" / "vae.pt", weights_only=False)
    assert trained["step"] == 4 and len(trained["history"]["loss"]) == 2  # steps 2 and 3 only
    exported = load(result.model_dir / "vae" / "diffusion_pytorch_model.safetensors")
    for name, value in trained["models"]["vae"].items():
        assert torch.equal(exported[name], value), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["vae_from"] == {"model": str(first.model_dir), "step": TINY.vae_steps}
    old_stats = load_components(first.model_dir, device="cpu").vae.config.latents_mean
    assert load_components(result.model_dir, device="cpu").vae.config.latents_mean != old_stats
    # then the model's transformer trains on from its step on the latents of the VAE trained on
    on_new_latents = ShapesTrainConfig(**{**longer.__dict__, "dit_steps": TINY.dit_steps + 2})
    tuned = train_shapes(
        tmp_path / "dit-on",
        on_new_latents,
        device="cpu",
        progress=False,
        reuse_stages_from=out,
        dit_from=first.model_dir,
    )
    assert tuned.finished
    dit = torch.load(tmp_path / "dit-on" / "state" / "dit.pt", weights_only=False)
    assert dit["step"] == TINY.dit_steps + 2 and len(dit["history"]["loss"]) == 2
    new_vae = load(tuned.model_dir / "vae" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(new_vae[k], v) for k, v in exported.items()), "the VAE trained on"


def test_training_a_model_folders_vae_on_refuses_what_would_change_its_past(straight_run, tmp_path):
    _, first = straight_run
    shorter = ShapesTrainConfig(**{**TINY.__dict__, "vae_steps": 1})
    with pytest.raises(InputError, match="trained 2 steps"):
        train_shapes(tmp_path / "a", shorter, device="cpu", progress=False, vae_from=first.model_dir)
    moved_prefix = ShapesTrainConfig(**{**TINY.__dict__, "vae_steps": 4})
    with pytest.raises(InputError, match="set vae_full_clip_steps to 2"):
        train_shapes(tmp_path / "b", moved_prefix, device="cpu", progress=False, vae_from=first.model_dir)
    other_lr = ShapesTrainConfig(
        **{**TINY.__dict__, "vae_steps": 4, "vae_full_clip_steps": 2, "vae_lr": 1e-3}
    )
    with pytest.raises(InputError, match="vae_lr"):
        train_shapes(tmp_path / "c", other_lr, device="cpu", progress=False, vae_from=first.model_dir)
    both = ShapesTrainConfig(
        **{**TINY.__dict__, "vae_steps": 4, "vae_full_clip_steps": 2, "dit_steps": TINY.dit_steps + 2}
    )
    with pytest.raises(InputError, match="trains that VAE on"):
        train_shapes(tmp_path / "d", both, device="cpu", progress=False, dit_from=first.model_dir)
    assert not (tmp_path / "d").exists()  # refused before the run folder is made
    longer_dit = ShapesTrainConfig(**{**TINY.__dict__, "dit_steps": TINY.dit_steps + 2})
    with pytest.raises(InputError, match="did not start from"):  # a run whose VAE began from random weights
        train_shapes(
            tmp_path / "e",
            longer_dit,
            device="cpu",
            progress=False,
            reuse_stages_from=straight_run[0],
            dit_from=first.model_dir,
        )


def test_a_model_folder_of_another_world_or_layout_is_refused(straight_run, tmp_path):
    import shutil

    _, first = straight_run
    other_data = ShapesTrainConfig(**{**TINY.__dict__, "num_clips": 4})
    with pytest.raises(InputError, match="num_clips"):
        train_shapes(tmp_path / "a", other_data, device="cpu", progress=False, vae_from=first.model_dir)
    with pytest.raises(InputError, match="missing"):
        train_shapes(tmp_path / "b", TINY, device="cpu", progress=False, vae_from=tmp_path / "none")
    forged = tmp_path / "forged"
    shutil.copytree(first.model_dir, forged)
    config_file = forged / "vae" / "config.json"
    vae_config = json.loads(config_file.read_text())
    vae_config["latents_mean"] = [m + 0.5 for m in vae_config["latents_mean"]]
    config_file.write_text(json.dumps(vae_config))
    with pytest.raises(InputError, match="does not reproduce"):
        train_shapes(tmp_path / "c", TINY, device="cpu", progress=False, vae_from=forged)
    with pytest.raises(InputError, match="not both"):
        train_shapes(
            tmp_path / "d",
            TINY,
            device="cpu",
            progress=False,
            vae_from=forged,
            reuse_stages_from=straight_run[0],
        )


def test_reusing_stages_of_a_run_with_another_vae_or_data_is_refused(straight_run, tmp_path):
    source, _ = straight_run
    other_data = ShapesTrainConfig(**{**TINY.__dict__, "num_clips": 4})
    with pytest.raises(InputError, match="num_clips"):
        train_shapes(tmp_path / "a", other_data, device="cpu", progress=False, reuse_stages_from=source)
    with pytest.raises(InputError, match="missing"):
        train_shapes(tmp_path / "b", TINY, device="cpu", progress=False, reuse_stages_from=tmp_path / "none")


def test_a_latent_cache_made_by_another_vae_is_refused(straight_run, tmp_path):
    source, _ = straight_run
    state = torch.load(source / "state" / "latents.pt", weights_only=False)
    state["latents"][0] = state["latents"][0] + 1.0
    forged = tmp_path / "forged"
    import shutil

    shutil.copytree(source, forged)
    torch.save(state, forged / "state" / "latents.pt")
    with pytest.raises(InputError, match="latent cache does not match"):
        train_shapes(tmp_path / "c", TINY, device="cpu", progress=False, reuse_stages_from=forged)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_batches_rendered_by_worker_processes_train_the_same_weights(straight_run, tmp_path):
    """``data_workers`` only moves rendering into other processes: the batch of a step is unchanged."""
    from flowstudio.worlds.train_shapes import RUNTIME_FIELDS

    assert "data_workers" in RUNTIME_FIELDS
    with_workers = ShapesTrainConfig(**{**TINY.__dict__, "data_workers": 2})
    result = train_shapes(tmp_path / "workers", with_workers, device="cpu", progress=False)
    straight, other = _weights(straight_run[1].model_dir), _weights(result.model_dir)
    for name in straight:
        assert torch.equal(straight[name], other[name]), f"{name} differs with data_workers=2"


def test_colour_term_and_longer_vae_crops_change_the_vae_stage(tmp_path):
    """The 8x8-pooled colour L1 is part of the VAE loss when weighted (the loss curve differs)."""
    base = ShapesTrainConfig(**{**TINY.__dict__, "num_frames": 9, "vae_crop_frames": 9, "dit_steps": 0})
    coloured = ShapesTrainConfig(**{**base.__dict__, "vae_color_weight": 1.0})
    plain, color = (
        train_shapes(tmp_path / name, config, device="cpu", progress=False, budget=Budget(max_steps=2))
        for name, config in (("plain", base), ("color", coloured))
    )
    assert plain.summary["final_vae_loss"] < color.summary["final_vae_loss"], (
        "loss = L1 + MSE + KL + w * L1(pool8(recon), pool8(video)) must grow with w > 0"
    )


def test_each_component_has_its_own_random_stream(tmp_path):
    """Changing the transformer's size leaves the VAE's and text encoder's initial weights unchanged."""
    from flowstudio.models.factory import build_tiny_checkpoint

    a = build_tiny_checkpoint(tmp_path / "a", seed=3, num_attention_heads=2, sharded=False)
    b = build_tiny_checkpoint(tmp_path / "b", seed=3, num_attention_heads=4, sharded=False)
    files = {"vae": "diffusion_pytorch_model.safetensors", "text_encoder": "model.safetensors"}
    for component, file in files.items():
        left, right = load_file(a / component / file), load_file(b / component / file)
        assert all(torch.equal(left[k], right[k]) for k in left), f"{component} changed with the transformer"


def test_the_vae_stage_records_a_held_out_learning_curve(tmp_path):
    """With eval_every, the VAE's whole-clip held-out PSNR is kept per step in the summary (dB, finite)."""
    config = ShapesTrainConfig(**{**TINY.__dict__, "vae_steps": 4, "eval_every": 2, "dit_steps": 1})
    result = train_shapes(tmp_path / "curve", config, device="cpu", progress=False)
    curve = result.summary["held_out"]["vae"]
    assert [step for step, _ in curve] == [2, 4]
    assert all(0.0 < value < 100.0 for _, value in curve), curve
    saved = torch.load(tmp_path / "curve" / "state" / "vae.pt", weights_only=False)
    assert saved["evals"] == curve


def test_the_last_vae_steps_train_on_whole_clips():
    """Short crops first, then all ``num_frames`` frames: every chunk recurrence of the VAE cache."""
    from flowstudio.worlds.train_shapes import vae_crop_at

    config = ShapesTrainConfig(
        vae_steps=10, vae_crop_frames=9, vae_batch=2, vae_full_clip_steps=3, vae_full_clip_batch=1
    )
    assert [vae_crop_at(config, k) for k in (0, 6, 7, 9)] == [(9, 2), (9, 2), (17, 1), (17, 1)]
    assert vae_crop_at(ShapesTrainConfig(vae_steps=10), 9) == (5, 4), "default: crops only, as before"


def test_the_vae_stage_trains_under_bfloat16_autocast(tmp_path):
    """vae_autocast='bfloat16' runs the VAE forward in bf16 with a float32 loss; other values are refused."""
    config = ShapesTrainConfig(**{**TINY.__dict__, "vae_autocast": "bfloat16", "dit_steps": 1})
    result = train_shapes(tmp_path / "bf16", config, device="cpu", progress=False)
    assert result.finished and np.isfinite(result.summary["final_vae_loss"])
    with pytest.raises(InputError, match="vae_autocast"):
        ShapesTrainConfig(**{**TINY.__dict__, "vae_autocast": "fp8"})


def test_the_transformer_stage_trains_under_bfloat16_autocast_on_reused_stages(straight_run, tmp_path):
    """dit_autocast='bfloat16' (a transformer-only key: the finished run's VAE and cache are reused) runs the
    transformer forward in bf16: the loss moves off the float32 run's (autocast engaged) but stays close."""
    source, _ = straight_run
    bf16 = ShapesTrainConfig(**{**TINY.__dict__, "dit_autocast": "bfloat16"})
    result = train_shapes(tmp_path / "bf16", bf16, device="cpu", progress=False, reuse_stages_from=source)
    assert result.finished
    fp32 = json.loads((source / "summary.json").read_text())["final_dit_loss"]
    loss = result.summary["final_dit_loss"]
    assert loss != fp32 and loss == pytest.approx(fp32, rel=0.05)
    with pytest.raises(InputError, match="dit_autocast"):
        ShapesTrainConfig(**{**TINY.__dict__, "dit_autocast": "float16"})


def test_object_pixels_weigh_more_in_the_vae_loss_when_asked(straight_run, tmp_path):
    """vae_object_weight > 1 changes the VAE stage (weighted L1 + MSE over the exact object masks); 1.0
    leaves it exactly as before (the straight run's VAE loss curve)."""
    same = train_shapes(
        tmp_path / "one",
        ShapesTrainConfig(**{**TINY.__dict__, "vae_object_weight": 1.0}),
        device="cpu",
        progress=False,
        budget=Budget(max_steps=2),
    )
    heavy = train_shapes(
        tmp_path / "four",
        ShapesTrainConfig(**{**TINY.__dict__, "vae_object_weight": 4.0}),
        device="cpu",
        progress=False,
        budget=Budget(max_steps=2),
    )
    straight = json.loads((straight_run[0] / "summary.json").read_text())
    assert same.summary["final_vae_loss"] == straight["final_vae_loss"]
    assert heavy.summary["final_vae_loss"] != straight["final_vae_loss"]


def test_a_state_file_from_before_the_trainer_resumes_to_the_same_weights(straight_run, tmp_path):
    """``state/vae.pt`` as the hand-written loop saved it ({model, optimizer, step, losses, evals}: runs
    in progress when the trainer came) resumes, and the run ends with the straight run's weights."""
    out = tmp_path / "old-format"
    train_shapes(out, TINY, device="cpu", budget=Budget(max_steps=1), progress=False)
    saved = torch.load(out / "state" / "vae.pt", weights_only=False)
    assert saved["step"] == 1
    ((name, model),), ((_, optimizer),) = saved["models"].items(), saved["optimizers"].items()
    assert name == "vae"
    torch.save(
        {
            "model": model,
            "optimizer": optimizer,
            "step": saved["step"],
            "losses": saved["history"]["loss"],
            "evals": saved["evals"],
        },
        out / "state" / "vae.pt",
    )
    result = train_shapes(out, TINY, device="cpu", progress=False)
    assert result.finished
    straight, resumed = _weights(straight_run[1].model_dir), _weights(result.model_dir)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), f"{key} differs after resuming the old format"
    assert result.summary["final_vae_loss"] == straight_run[1].summary["final_vae_loss"]


def test_stages_write_tensorboard_curves_and_sample_grids(tmp_path):
    """Each stage logs its loss and LR (VAE: held-out PSNR) and sample grids; samples change nothing."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = ShapesTrainConfig(**{**TINY.__dict__, "eval_every": 2, "sample_every": 2, "dit_steps": 2})
    result = train_shapes(tmp_path / "tb", config, device="cpu", progress=False)
    expected = {"vae": {"train/loss", "lr/vae", "eval/psnr_db"}, "dit": {"train/loss", "lr/dit"}}
    for stage, scalars in expected.items():
        events = EventAccumulator(str(tmp_path / "tb" / "tensorboard" / stage)).Reload()
        assert scalars <= set(events.Tags()["scalars"]), (stage, events.Tags())
        assert [e.step for e in events.Images("samples")] == [2], stage
        grid = next((tmp_path / "tb" / "tensorboard" / stage / "samples").glob("*.png"))
        assert grid.stat().st_size > 0
    assert result.summary["held_out"]["vae"][0][0] == 2
    plain = train_shapes(
        tmp_path / "plain",
        ShapesTrainConfig(**{**config.__dict__, "sample_every": 0}),
        device="cpu",
        progress=False,
    )
    assert plain.summary["final_dit_loss"] == result.summary["final_dit_loss"]


def test_the_latent_cache_encoded_in_batches_matches_one_clip_at_a_time(straight_run, tmp_path):
    """``cache_batch`` clips per VAE / text-encoder call: the same clips and captions, the same values up to
    float rounding, and a cache resumed mid-way (from any clip) ends with every clip once."""
    from flowstudio.worlds.train_shapes import RUNTIME_FIELDS, build_latent_cache

    assert "cache_batch" in RUNTIME_FIELDS
    out, _ = straight_run
    one_by_one = torch.load(out / "state" / "latents.pt", weights_only=False)
    components = load_components(out / "model", device="cpu")  # the VAE and text encoder that made it
    config = ShapesTrainConfig(**{**TINY.__dict__, "num_clips": 3, "cache_batch": 2})
    path = tmp_path / "latents.pt"
    torch.save({k: v[:1] for k, v in one_by_one.items()}, path)  # a cache stopped after clip 0
    batched = build_latent_cache(components, config, path, torch.device("cpu"), progress=False)
    assert batched["captions"] == one_by_one["captions"]
    assert len(batched["latents"]) == 3
    for a, b in zip(batched["latents"], one_by_one["latents"], strict=True):
        assert a.shape == b.shape and float((a.float() - b.float()).abs().max()) < 1e-2
    for a, b in zip(batched["embeds"], one_by_one["embeds"], strict=True):
        assert a.shape == b.shape and float((a.float() - b.float()).abs().max()) < 1e-2
    assert torch.load(path, weights_only=False)["captions"] == one_by_one["captions"], "saved at the end"


def test_transformer_batches_drawn_on_the_device_are_a_pure_function_of_the_step(tmp_path):
    """``dit_batches_on: device``: a run stopped and resumed ends with the straight run's weights, and its
    batches follow the host batches' distributions without their values."""
    from flowstudio.worlds.train_shapes import TRANSFORMER_FIELDS, DeviceBatches

    assert "dit_batches_on" in TRANSFORMER_FIELDS
    config = ShapesTrainConfig(**{**TINY.__dict__, "dit_batches_on": "device", "dit_steps": 4})
    straight = train_shapes(tmp_path / "straight", config, device="cpu", progress=False)
    resumed_dir = tmp_path / "resumed"
    first = train_shapes(resumed_dir, config, device="cpu", budget=Budget(max_steps=4), progress=False)
    assert not first.finished
    resumed = train_shapes(resumed_dir, config, device="cpu", progress=False)
    a, b = _weights(straight.model_dir), _weights(resumed.model_dir)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"

    embeds = [torch.randn(n, 16) for n in (3, 5, 2)]
    empty = torch.randn(1, 16)
    wide = ShapesTrainConfig(**{**config.__dict__, "dit_batch": 4096, "text_dropout": 0.25, "i2v_prob": 0.5})
    batches = DeviceBatches(wide, torch.Size((3, 48, 2, 2, 2)), embeds, empty, torch.device("cpu"))
    first_draw, again, other = batches(7), batches(7), batches(8)
    for key in first_draw:
        assert torch.equal(first_draw[key], again[key]), key
    assert not torch.equal(first_draw["noise"], other["noise"])
    index, text = first_draw["index"], first_draw["text"]
    assert set(index.tolist()) == {0, 1, 2} and text.shape == (4096, 5, 16)
    dropped = (text[:, 1:] == 0).all(dim=(1, 2)) & torch.isclose(text[:, 0], empty[0]).all(dim=1)
    assert abs(float(dropped.float().mean()) - 0.25) < 0.03, "caption dropout at its rate"
    kept = ~dropped
    for row in torch.nonzero(kept)[:50, 0].tolist():  # a kept row holds its clip's caption, zero-padded
        states = embeds[int(index[row])]
        assert torch.equal(text[row, : states.shape[0]], states)
        assert not text[row, states.shape[0] :].any()
    assert abs(float(first_draw["i2v"].float().mean()) - 0.5) < 0.03
    sigma = first_draw["sigma"]
    assert float(sigma.min()) >= 0 and float(sigma.max()) <= 1 and float(sigma.mean()) > 0.55, (
        "half shifted up"
    )
    assert abs(float(first_draw["noise"].std()) - 1) < 0.01


def test_an_unknown_batch_source_is_refused():
    with pytest.raises(InputError, match="dit_batches_on"):
        ShapesTrainConfig(dit_batches_on="gpu")
    with pytest.raises(InputError, match="cache_batch"):
        ShapesTrainConfig(cache_batch=0)
