"""Fine-tune a trained toy model's VAE *decoder* alone, on whole ShapeWorld clips.

Why the decoder alone: the transformer was trained on the encoder's latents (their distribution,
``latents_mean`` / ``latents_std``). Retraining the whole VAE moves that latent space and the
transformer with it (hours on a CPU); with the encoder frozen, every latent the transformer makes
means what it meant, and a sharper decoder improves every decoded output (text-to-video frames, the
image-to-video continuation, edits) at once. What the encoder threw away (the products' patterns:
``benchmarks/results/material_vae.md``) no decoder can bring back; the measured gain says how much
was the decoder's.

The loss is the VAE stage's (:class:`~flowstudio.worlds.train_shapes.VAEObjective`): L1 + MSE with
the object's pixels weighted, the pooled-colour term, on decoded samples of the posterior (the
transformer's latents are never exact, so the decoder keeps seeing noisy ones). Each step renders
whole ``num_frames`` clips from a seed stream of its own (``seed``), so the data never repeats the
original run's. Resumable (``OUT/state/decoder.pt``), with the held-out whole-clip PSNR as its curve;
``OUT/model`` is the input model with the new decoder (everything else copied byte for byte).

    flowstudio worlds train decoder --model flowstudio/assets/toy-shapes --out outputs/decoder_ft \\
        --steps 2000 [--max-minutes 60]
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowstudio.errors import InputError
from flowstudio.train import Budget, Part
from flowstudio.video import frames_to_tensor
from flowstudio.worlds.train_shapes import (
    ShapesTrainConfig,
    VAEObjective,
    _generator,
    _render,
    _run_stage,
    _schedule,
    mean_clip_psnr,
    vae_batch,
)

STAGE = "decoder"


@dataclass(frozen=True)
class DecoderFinetuneConfig:
    """One decoder fine-tune. The loss weights default to the shipped toy VAE's."""

    steps: int = 2000
    batch: int = 1
    lr: float = 1e-4
    seed: int = 7  # the data stream: not the original run's 0
    object_weight: float = 4.0
    color_weight: float = 1.0
    lr_decay_fraction: float = 0.2
    autocast: str = "bfloat16"  # the VAE's forward (1.4x on an AVX512-BF16 CPU); "float32": off
    eval_every: int = 100
    eval_clips: int = 4
    checkpoint_every: int = 50
    log_every: int = 10

    def __post_init__(self) -> None:
        from flowstudio.checks import check_int, check_number

        for name, minimum in (("steps", 1), ("batch", 1), ("eval_every", 0), ("eval_clips", 1),
                              ("checkpoint_every", 1), ("log_every", 1), ("seed", 0)):  # fmt: skip
            check_int(name, getattr(self, name), minimum=minimum)
        check_number("lr", self.lr, positive=True, what="; in YAML write 1.0e-4, not 1e-4")
        if self.autocast not in ("float32", "bfloat16"):
            raise InputError(f"autocast must be 'float32' or 'bfloat16', got {self.autocast!r}")

    def stage_config(self, frames: int, height: int, width: int) -> ShapesTrainConfig:
        """The toy trainer's settings that make this run's batches, loss, schedule and bookkeeping."""
        return ShapesTrainConfig(
            seed=self.seed,
            num_frames=frames,
            height=height,
            width=width,
            vae_steps=self.steps,
            vae_full_clip_steps=self.steps,  # every step a whole clip
            vae_full_clip_batch=self.batch,
            vae_crop_size=min(height, width),
            vae_lr=self.lr,
            vae_object_weight=self.object_weight,
            vae_color_weight=self.color_weight,
            lr_decay_fraction=self.lr_decay_fraction,
            vae_autocast=self.autocast,
            eval_every=self.eval_every,
            eval_clips=self.eval_clips,
            checkpoint_every=self.checkpoint_every,
            log_every=self.log_every,
        )


def _model_size(model: Path) -> tuple[int, int, int]:
    """Frames and size the toy model was trained at (its ``training_summary.json``; 17 x 128 x 128)."""
    from flowstudio.models import TRAINING_SUMMARY

    path = model / TRAINING_SUMMARY
    config = json.loads(path.read_text()).get("config", {}) if path.is_file() else {}
    return int(config.get("num_frames", 17)), int(config.get("height", 128)), int(config.get("width", 128))


def finetune_decoder(
    model: str | Path,
    out: str | Path,
    config: DecoderFinetuneConfig | None = None,
    *,
    budget: Budget | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume) the decoder of ``model``'s VAE into ``out``; writes ``out/model`` when the
    run reaches its last step. Returns ``{"finished", "step_evals", "model_dir"}``."""
    config = config or DecoderFinetuneConfig()
    model, out = Path(model), Path(out)
    if not (model / "vae" / "config.json").is_file():
        raise InputError(f"{model} has no vae/config.json: give a diffusers-format model folder")
    frames, height, width = _model_size(model)
    stage = config.stage_config(frames, height, width)
    out.mkdir(parents=True, exist_ok=True)
    record = {"model": str(model), **dataclasses.asdict(config)}
    stored = out / "config.json"
    if stored.is_file():
        # keys added to the config after the run began count as their defaults
        defaults = {"model": str(model), **dataclasses.asdict(DecoderFinetuneConfig())}
        before = {**defaults, **json.loads(stored.read_text())}
        changed = sorted(
            k for k in set(before) | set(record) if before.get(k) != record.get(k) and k != "steps"
        )
        if changed:
            raise InputError(
                f"{out} holds a decoder fine-tune with other settings ({', '.join(changed)}); use a new "
                "folder or the same settings (only steps may change)"
            )
    stored.write_text(json.dumps(record, indent=2))

    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(model / "vae", torch_dtype=torch.float32)
    vae.requires_grad_(False)
    trained = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for parameter in trained:
        parameter.requires_grad_(True)
    vae.train()
    device = torch.device("cpu")
    held_out = [
        frames_to_tensor(_render(_generator(stage.seed, "decoder-eval", i), stage)[0])
        for i in range(config.eval_clips)
    ]

    def reconstruct(video: torch.Tensor) -> torch.Tensor:
        return vae.decode(vae.encode(video).latent_dist.mode()).sample.clamp(-1, 1)

    def evaluate() -> float:
        return mean_clip_psnr(reconstruct, held_out)

    def loss_fn(module: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return module(batch[0], batch[1], batch[2])

    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=0.0)
    part = Part(
        vae, optimizer, lr=_schedule(config.lr, config.steps, stage), forward=VAEObjective(vae, stage)
    )
    run = _run_stage(
        STAGE,
        part,
        config.steps,
        out / "state",
        stage,
        functools.partial(vae_batch, stage),
        loss_fn,
        progress,
        budget or Budget(),
        device,
        evaluate=evaluate if config.eval_every else None,
        sample=None,
    )
    (out / "history.json").write_text(json.dumps({"loss": run.losses, "evals": run.evals}))
    model_dir = None
    if run.finished:
        model_dir = export_with_decoder(model, vae, out / "model")
    return {"finished": run.finished, "step_evals": run.evals, "model_dir": model_dir}


def export_with_decoder(model: Path, vae: torch.nn.Module, model_dir: Path) -> Path:
    """``model`` copied to ``model_dir`` with ``vae``'s weights (its config, hence the latent
    statistics, stays the model's: the encoder did not change)."""
    tmp = model_dir.with_name(model_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(model, tmp)
    config_text = (tmp / "vae" / "config.json").read_text()
    for path in (tmp / "vae").glob("*.safetensors"):
        path.unlink()
    vae.float().save_pretrained(tmp / "vae")
    (tmp / "vae" / "config.json").write_text(config_text)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    os.replace(tmp, model_dir)
    return model_dir
