"""Train the ShapeWorld toy Wan2.2 model: ``flowstudio worlds train shapes``.

Three resumable stages, each a few dozen lines, all deterministic from one seed:

1. **VAE** -- a tiny ``AutoencoderKLWan`` in Wan2.2 form (48 channels, 16x spatial, 4x temporal)
   learns to reconstruct ShapeWorld clips (random crops of rendered clips, L1 + MSE + small KL).
   Its latent statistics become ``latents_mean`` / ``latents_std`` in its config, as Wan2.2 ships.
2. **Latent cache** -- clips rendered from ``(seed, index)`` are encoded once, with their captions'
   text-encoder states (the UMT5 text encoder stays frozen, as in Wan2.2).
3. **Transformer** -- a tiny ``WanTransformer3DModel`` learns the flow-matching velocity
   ``v = noise - x0``, as Wan2.2 TI2V trains: text-to-video and image-to-video in one model (with
   probability ``i2v_prob`` latent frame 0 is clean, gets timestep 0 and no loss), and the caption
   dropped to the empty prompt with probability ``text_dropout`` so that CFG works.

Stages 1 and 3 run on the project's one trainer (:mod:`flowstudio.train`): each writes
``state/<stage>.pt`` (model, optimizer, step, losses, held-out evaluations) every ``checkpoint_every``
steps, and picks up from it when run again (also from the format written before the trainer existed).
The batch of step ``k`` is a pure function of ``(seed, stage, k)``, so an interrupted and resumed run
ends with the same weights as an uninterrupted one. TensorBoard event files (losses, learning rate,
held-out curve, sample grids every ``sample_every`` steps) go to ``<out>/tensorboard/<stage>``. The
result is a diffusers-format folder that loads through the same code as the real
Wan2.2-TI2V-5B-Diffusers checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from flowstudio.core.flow import add_noise, shift_sigmas
from flowstudio.core.ti2v import first_frame_mask
from flowstudio.denoiser import WanDenoiser
from flowstudio.errors import InputError
from flowstudio.models.factory import build_tiny_checkpoint
from flowstudio.train import (
    Budget,
    LatestFile,
    Part,
    Trainer,
    TrainerConfig,
    atomic_save,
    batch_stream,
    cosine_tail,
    image_grid,
    loss_step,
)
from flowstudio.video import frames_to_tensor
from flowstudio.weights import encode_prompts, load_components

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShapesTrainConfig:
    """One training run. Every field has a default; a YAML file overrides a few (``configs/toy/``)."""

    seed: int = 0
    # model sizes
    num_layers: int = 4
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    ffn_dim: int = 512
    freq_dim: int = 64
    text_dim: int = 64
    # the transformer's spatial patch (1, p, p): 2 as Wan2.2; 1 gives 8x8 tokens per latent frame at
    # 128 px instead of 4x4 of 32x32 pixels each (findings_toy_model.md: a lead for shape), ~4.5x a step
    dit_patch_size: int = 2
    text_encoder_layers: int = 2
    text_encoder_heads: int = 4
    vae_base_dim: int = 16
    vae_decoder_base_dim: int = 24
    vae_num_res_blocks: int = 1
    # data
    num_frames: int = 17
    height: int = 128
    width: int = 128
    # stage 1: VAE
    vae_steps: int = 3000
    vae_batch: int = 4
    vae_crop_frames: int = 5
    vae_crop_size: int = 64
    vae_lr: float = 3e-4
    vae_kl_weight: float = 1e-6
    # L1 between 8x8-pooled reconstruction and input: weighs the low-frequency colour that the readers
    # (and a colour edit) depend on, which plain L1 + MSE let drift (red decoded as orange).
    vae_color_weight: float = 0.0
    # Pixels of the object (exact render masks) weigh this much in the VAE's L1 and MSE: the object is a
    # small part of the frame but what the readers, edits and text prompts are about; at 1.0 a VAE
    # trained 4000 steps kept backgrounds (reader 100%) and blurred objects (colour read 32%).
    vae_object_weight: float = 1.0
    # The last `vae_full_clip_steps` VAE steps train on crops of all `num_frames` frames (batch
    # `vae_full_clip_batch`): the encoder/decoder feature cache is a recurrence over 4-frame chunks, and
    # crops of 9 frames (2 recurrences) leave chunks 3 and 4 of a 17-frame clip drifting (measured:
    # 19 dB on frames 1-8, 15 dB on frames 9-16 after 1000 steps). Short crops first learn the
    # spatial code cheaply; full-length clips then train every recurrence of the real clip length.
    vae_full_clip_steps: int = 0
    vae_full_clip_batch: int = 1
    # stage 2: latent cache
    num_clips: int = 2000
    stats_clips: int = 32
    # clips per VAE / text-encoder call while the cache is built (rendered ahead by `data_workers`
    # processes): one call per clip costs ~40 ms of launches on a GPU (measured on an H200). A runtime
    # key: batching changes the cached values by float rounding at most (checked against one-by-one
    # encoding in tests/test_train_shapes.py), never which clips or captions are cached.
    cache_batch: int = 1
    # stage 3: transformer
    dit_steps: int = 20000
    dit_batch: int = 16
    dit_lr: float = 3e-4
    i2v_prob: float = 0.5
    text_dropout: float = 0.1
    train_shift: float = 3.0
    # where the transformer's batches are drawn: "host" (numpy on the CPU, every batch then copied to the
    # device: the batches of every run before 2026-12-05) or "device" (torch on the training device, with
    # the cached latents and caption states kept there, so nothing crosses from the host per step; numpy's
    # noise alone takes 0.11 s per batch of 256 on this project's CPU). The two draw different batches
    # (and so do CUDA and the CPU under "device"): a run keeps its choice, and resumes on the same kind of
    # device for bit-identical weights.
    dit_batches_on: str = "host"
    # both stages: the learning rate is constant, then falls along a cosine to a tenth of itself over
    # this final fraction of each stage's steps (0: constant throughout). A pure function of the step,
    # so resumed runs stay bit-identical, and a constant-rate prefix can be extended.
    lr_decay_fraction: float = 0.0
    # "bfloat16": the VAE stage's forward under torch.autocast (1.4x faster VAE steps on a CPU with
    # AMX/AVX512-BF16, measured at 9 x 64 x 64); "float32": off
    vae_autocast: str = "float32"
    # the same switch for the transformer stage's forward: "bfloat16" is 1.5-1.6x faster per step on this
    # project's AVX512-BF16 CPU at batch 16 (4.9 M and 20 M parameters, one thread, measured 2026-12-01;
    # an earlier single-step timing had seen no gain); "float32": off
    dit_autocast: str = "float32"
    # the trainer's mixed precision (flowstudio.train): "auto" is bf16 autocast on a CUDA device that
    # supports it and full precision on CPU (where vae_autocast is the VAE's own switch); "no", "bf16"
    mixed_precision: str = "auto"
    # micro-batches per optimisation step (batch i of a stage is micro-step i: with 1, step k's batch)
    grad_accum: int = 1
    # data: processes that render the VAE stage's clips ahead of the optimiser (0: inline). The
    # batches do not depend on it, so it may differ between a run and its resumption.
    data_workers: int = 0
    # the VAE's held-out learning curve: whole-clip PSNR on `eval_clips` clips of a stream training never
    # draws, every `eval_every` VAE steps (0: off), saved in the stage state and plotted beside the losses
    eval_every: int = 0
    eval_clips: int = 2
    # TensorBoard sample grid every `sample_every` steps of each stage (0: off): VAE held-out clip over its
    # reconstruction; transformer: a cached clip over its one-step x0 prediction from sigma 0.5, decoded
    sample_every: int = 0
    # bookkeeping
    checkpoint_every: int = 200
    log_every: int = 20

    def __post_init__(self) -> None:
        if self.vae_autocast not in ("float32", "bfloat16"):
            raise InputError(f"vae_autocast must be 'float32' or 'bfloat16', got {self.vae_autocast!r}")
        if self.dit_autocast not in ("float32", "bfloat16"):
            raise InputError(f"dit_autocast must be 'float32' or 'bfloat16', got {self.dit_autocast!r}")
        if self.mixed_precision not in ("auto", "no", "bf16"):
            raise InputError(f"mixed_precision must be 'auto', 'no' or 'bf16', got {self.mixed_precision!r}")
        if self.dit_patch_size not in (1, 2):
            raise InputError(f"dit_patch_size must be 1 or 2, got {self.dit_patch_size}")
        if self.grad_accum < 1:
            raise InputError(f"grad_accum must be >= 1, got {self.grad_accum}")
        if self.dit_batches_on not in ("host", "device"):
            raise InputError(f"dit_batches_on must be 'host' or 'device', got {self.dit_batches_on!r}")
        if self.cache_batch < 1:
            raise InputError(f"cache_batch must be >= 1, got {self.cache_batch}")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> ShapesTrainConfig:
        """The fields of a YAML recipe; ``base: OTHER.yaml`` (beside it) supplies the keys it leaves out."""
        from flowstudio.recipes import read_recipe

        data = read_recipe(path, hint="see configs/toy/shapes_cpu_deep.yaml")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InputError(f"{path}: unknown training keys {unknown}")
        return cls(**{**data, **overrides})


# -- helpers ------------------------------------------------------------------------------------


def _generator(seed: int, stage: str, step: int) -> np.random.Generator:
    """The data of step ``step`` of ``stage``: a pure function of the run seed."""
    return np.random.default_rng([seed, sum(map(ord, stage)), step])


def _render(spec_rng: np.random.Generator, config: ShapesTrainConfig) -> tuple[np.ndarray, str]:
    clip, _, text = _render_scene(spec_rng, config)
    return clip, text


def _render_scene(
    spec_rng: np.random.Generator, config: ShapesTrainConfig
) -> tuple[np.ndarray, np.ndarray, str]:
    """A random clip, its exact object mask ``(T, H, W)`` and caption (the caption's draws included, so
    every stage reads one stream)."""
    from flowstudio.worlds.captions import caption
    from flowstudio.worlds.shapes import random_spec, render_scene

    spec = random_spec(spec_rng)
    scene = render_scene(spec, config.num_frames, config.height, config.width)
    return scene.frames, scene.mask, caption(spec, spec_rng)


class StageRun(NamedTuple):
    """What one invocation of a stage leaves: its loss history, whether it reached its last step (False:
    the budget ran out) and its held-out evaluations ``[[step, value], ...]`` (empty when off)."""

    losses: list[float]
    finished: bool
    evals: list[list[float]]


def _run_stage(
    name: str,
    part: Part,
    steps: int,
    state_dir: Path,
    config: ShapesTrainConfig,
    make_batch: Callable[[int], Any],
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    progress: bool,
    budget: Budget,
    device: torch.device,
    workers: int = 0,
    evaluate: Callable[[], float] | None = None,
    sample: Callable[[int], np.ndarray] | None = None,
) -> StageRun:
    """One resumable stage on the project's trainer: AdamW (``part``), gradient clipping at 1.0,
    checkpoint ``state/<name>.pt`` every ``checkpoint_every`` steps.

    ``make_batch(step)`` gives the data of a step (CPU tensors; a pure function of the step) and
    ``loss_fn(module, batch)`` the loss, calling the trainer's prepared ``module``. ``evaluate()`` (eval
    mode, no gradients), when given, runs every ``config.eval_every`` steps; its values are kept in the
    state as ``evals`` (``[step, value]`` pairs) and returned in the :class:`StageRun`.
    """
    settings = TrainerConfig(
        name=name,
        steps=steps,
        grad_accum=config.grad_accum,
        grad_clip=1.0,
        mixed_precision=config.mixed_precision,
        checkpoint_every=config.checkpoint_every,
        log_every=config.log_every,
        eval_every=config.eval_every,
        eval_name="psnr_db",
        sample_every=config.sample_every,
        data_workers=workers,
        progress=progress,
        logdir=state_dir.parent / "tensorboard" / name,
    )
    trainer = Trainer(settings, {name: part}, cpu=device.type == "cpu")
    run = trainer.fit(
        loss_step(loss_fn, name),
        make_batch,
        LatestFile(state_dir / f"{name}.pt"),
        budget=budget,
        evaluate=evaluate,
        sample=sample,
    )
    return StageRun(run.history.get("loss", []), run.finished, run.evals)


# -- stages -------------------------------------------------------------------------------------


def _autocast(config: ShapesTrainConfig, device: torch.device, stage: str = "vae"):
    """A stage's forward autocast context (``vae_autocast`` / ``dit_autocast``); losses are float32."""
    choice = config.vae_autocast if stage == "vae" else config.dit_autocast
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=choice == "bfloat16")


def vae_crop_at(config: ShapesTrainConfig, step: int) -> tuple[int, int]:
    """``(frames, batch)`` of VAE step ``step``: short crops, then whole clips for the last
    ``vae_full_clip_steps`` steps."""
    if step >= config.vae_steps - config.vae_full_clip_steps:
        return config.num_frames, config.vae_full_clip_batch
    return config.vae_crop_frames, config.vae_batch


def vae_batch(config: ShapesTrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VAE step ``step``'s data: clips ``(B, 3, T, h, w)`` in [-1, 1], object masks ``(B, 1, T, h, w)`` and
    the posterior-noise seed; a pure, picklable function of ``(config, step)`` (worker processes)."""
    rng = _generator(config.seed, "vae", step)
    frames, batch = vae_crop_at(config, step)
    crops, masks = [], []
    for _ in range(batch):
        clip, mask, _ = _render_scene(rng, config)
        t0 = int(rng.integers(0, config.num_frames - frames + 1))
        y0 = int(rng.integers(0, config.height - config.vae_crop_size + 1))
        x0 = int(rng.integers(0, config.width - config.vae_crop_size + 1))
        window = (
            slice(t0, t0 + frames),
            slice(y0, y0 + config.vae_crop_size),
            slice(x0, x0 + config.vae_crop_size),
        )
        crops.append(frames_to_tensor(clip[window]))
        masks.append(torch.from_numpy(mask[window].astype(np.float32)))
    return torch.cat(crops), torch.stack(masks)[:, None], torch.tensor(int(rng.integers(2**31)))


def train_vae(
    vae: torch.nn.Module,
    config: ShapesTrainConfig,
    state_dir: Path,
    device: torch.device,
    budget: Budget,
    progress: bool = True,
) -> StageRun:
    """Stage 1: reconstruction of random ``vae_crop_frames`` x ``vae_crop_size``^2 crops of clips.

    The Wan VAE encodes frame 0 alone, then chunks of 4 frames that read a feature cache of the chunk
    before, and decodes latent frame by latent frame the same way. A crop of 5 frames trains only the
    first chunk: the cache-reading path of every later chunk stays untrained, and whole 17-frame clips
    then fall from ~28 dB on frames 1-4 to ~16 dB on frames 12-16 (measured on the 2026-11 shipped
    VAE). Crops of 9 or more frames train that path.
    """

    objective = VAEObjective(vae, config)
    clips = max(config.eval_clips if config.eval_every else 0, 1 if config.sample_every else 0)
    held_out = [
        frames_to_tensor(_render(_generator(config.seed, "vae-eval", i), config)[0]) for i in range(clips)
    ]

    def loss_fn(module: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return module(batch[0].to(device), batch[1].to(device), batch[2])

    def reconstruct(video: torch.Tensor) -> torch.Tensor:
        return vae.decode(vae.encode(video.to(device)).latent_dist.mode()).sample.clamp(-1, 1).cpu()

    def evaluate() -> float:
        return mean_clip_psnr(reconstruct, held_out[: config.eval_clips])

    def sample(step: int) -> np.ndarray:
        """The first held-out clip (top) over its reconstruction (bottom), up to 8 frames."""
        video = held_out[0]
        return _frames_grid([video, reconstruct(video)])

    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    part = Part(vae, optimizer, lr=_schedule(config.vae_lr, config.vae_steps, config), forward=objective)
    return _run_stage(
        "vae",
        part,
        config.vae_steps,
        state_dir,
        config,
        functools.partial(vae_batch, config),
        loss_fn,
        progress,
        budget,
        device,
        workers=config.data_workers,
        evaluate=evaluate if config.eval_every else None,
        sample=sample if config.sample_every else None,
    )


def mean_clip_psnr(reconstruct: Callable[[torch.Tensor], torch.Tensor], videos: list[torch.Tensor]) -> float:
    """Mean whole-clip PSNR (dB) of ``reconstruct`` on clips in [-1, 1]: the cache path of every frame
    chunk included."""
    values = [float(10 * torch.log10(4.0 / (reconstruct(video) - video).pow(2).mean())) for video in videos]
    return float(np.mean(values))


class VAEObjective(torch.nn.Module):
    """The VAE stage's loss as one module call: encode, sample the posterior, decode, weigh the error.

    Why a module: ``encode`` and ``decode`` are not the VAE's ``forward``, and a DDP/FSDP wrapper
    synchronises gradients only for calls of its own ``forward``; wrapped here, the whole objective is
    one such call. It holds the VAE as its only submodule (same parameters, same order).
    """

    def __init__(self, vae: torch.nn.Module, config: ShapesTrainConfig) -> None:
        super().__init__()
        self.vae = vae
        self.config = config

    def forward(self, video: torch.Tensor, mask: torch.Tensor, noise_seed: torch.Tensor) -> torch.Tensor:
        """``video`` ``(B, 3, T, h, w)`` in [-1, 1], object ``mask`` ``(B, 1, T, h, w)``: the scalar loss
        L1 + MSE (object pixels weigh ``vae_object_weight``) + KL + pooled-colour L1."""
        config, device = self.config, video.device
        with _autocast(config, device):
            posterior = self.vae.encode(video).latent_dist
            noise_gen = torch.Generator(device="cpu").manual_seed(int(noise_seed))
            noise = torch.randn(posterior.mean.shape, generator=noise_gen).to(device)
            z = posterior.mean + posterior.std * noise
            recon = self.vae.decode(z).sample.float()
        error = recon - video
        if config.vae_object_weight == 1.0:
            loss = error.abs().mean() + error.pow(2).mean()
        else:  # the object's pixels count vae_object_weight times (weighted means of L1 and MSE)
            weight = 1.0 + (config.vae_object_weight - 1.0) * mask.to(device, error.dtype)
            norm = weight.sum() * error.shape[1]
            loss = (weight * error.abs()).sum() / norm + (weight * error.pow(2)).sum() / norm
        loss = loss + config.vae_kl_weight * posterior.kl().mean()
        if config.vae_color_weight:
            pool = torch.nn.functional.avg_pool3d
            color_error = (pool(recon, (1, 8, 8)) - pool(video, (1, 8, 8))).abs().mean()
            loss = loss + config.vae_color_weight * color_error
        return loss


def _schedule(base: float, steps: int, config: ShapesTrainConfig) -> Callable[[int], float]:
    return cosine_tail(base, steps, config.lr_decay_fraction)


def _frames_grid(videos: list[torch.Tensor], max_frames: int = 8) -> np.ndarray:
    """Rows of frames of clips ``(1, 3, T, H, W)`` in [-1, 1] as one ``(H', W', 3)`` uint8 image."""
    rows = []
    for video in videos:
        frames = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()
        step = max(1, -(-len(frames) // max_frames))
        rows.append(list(frames[::step]))
    return image_grid(rows)


@torch.no_grad()
def set_latent_statistics(vae: torch.nn.Module, config: ShapesTrainConfig, device: torch.device) -> None:
    """Per-channel mean/std of raw latents over held-out clips, stored in the VAE config (as Wan2.2)."""
    latents = []
    for i in range(config.stats_clips):
        clip, _ = _render(_generator(config.seed, "stats", i), config)
        latents.append(vae.encode(frames_to_tensor(clip).to(device)).latent_dist.mode().cpu())
    stacked = torch.cat(latents).transpose(0, 1).reshape(vae.config.z_dim, -1)
    vae.register_to_config(
        latents_mean=stacked.mean(1).tolist(), latents_std=stacked.std(1).clamp_min(1e-3).tolist()
    )


def cache_clip(config: ShapesTrainConfig, index: int) -> tuple[torch.Tensor, str]:
    """Clip ``index`` of the latent cache, rendered: ``(1, 3, T, H, W)`` in [-1, 1] and its caption; a pure,
    picklable function (worker processes)."""
    clip, text = _render(_generator(config.seed, "clip", index), config)
    return frames_to_tensor(clip), text


def _cache_chunk(config: ShapesTrainConfig, start: int, chunk: int) -> list[tuple[torch.Tensor, str]]:
    """Cache chunk ``chunk`` counted from clip ``start``: ``cache_batch`` clips, fewer at the end."""
    first = start + chunk * config.cache_batch
    return [cache_clip(config, i) for i in range(first, min(first + config.cache_batch, config.num_clips))]


@torch.no_grad()
def encode_clips(
    components, clips: list[tuple[torch.Tensor, str]], device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    """Rendered clips (:func:`cache_clip`) encoded in one VAE and one text-encoder call: for each, its
    normalised latent, unpadded caption states and caption (CPU, fp32)."""
    vae = components.vae
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    texts = [text for _, text in clips]
    raw = vae.encode(torch.cat([video for video, _ in clips]).to(device)).latent_dist.mode().cpu()
    embeds, mask = encode_prompts(components, texts)
    lengths = mask.sum(1).tolist()
    latents = (raw - mean) / std
    return [(latents[i : i + 1], embeds[i, : int(lengths[i])].cpu(), texts[i]) for i in range(len(clips))]


def _encode_clip(
    components, config: ShapesTrainConfig, index: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Clip ``index`` of the run: its normalised latent, unpadded caption states and caption (CPU, fp32)."""
    return encode_clips(components, [cache_clip(config, index)], device)[0]


@torch.no_grad()
def build_latent_cache(
    components, config: ShapesTrainConfig, path: Path, device: torch.device, progress: bool = True
) -> dict[str, torch.Tensor]:
    """Stage 2: normalised latents ``(N, 48, T', H', W')`` and caption states, resumable in chunks.

    Clips are rendered by ``data_workers`` processes (inline at 0) and encoded ``cache_batch`` at a time;
    the cache is saved every 100 clips."""
    cache = (
        torch.load(path, weights_only=False)
        if path.exists()
        else {"latents": [], "embeds": [], "captions": []}
    )
    start = len(cache["latents"])
    chunks = -(-(config.num_clips - start) // config.cache_batch)
    stream = batch_stream(functools.partial(_cache_chunk, config, start), 0, chunks, config.data_workers)
    bar = tqdm(desc="latents", disable=not progress, initial=start, total=config.num_clips)
    saved = start
    for clips in stream:
        for latent, embeds, text in encode_clips(components, clips, device):
            cache["latents"].append(latent.half())
            cache["embeds"].append(embeds.half())
            cache["captions"].append(text)
        bar.update(len(clips))
        done = len(cache["latents"])
        if done // 100 > saved // 100 or done == config.num_clips:
            atomic_save(cache, path)
            saved = done
    bar.close()
    return cache


def train_transformer(
    components,
    cache: dict[str, Any],
    config: ShapesTrainConfig,
    state_dir: Path,
    device: torch.device,
    budget: Budget,
    progress: bool = True,
) -> StageRun:
    """Stage 3: flow matching, T2V + I2V in one model, caption dropout for CFG."""
    transformer = components.transformer
    latents = torch.cat(cache["latents"]).float()
    embeds = cache["embeds"]
    empty, _ = encode_prompts(components, [""])
    empty = empty[0, :1].cpu()  # "" encodes to one </s> state; the rest is exactly zero

    make_batch: HostBatches = HostBatches(config, latents.shape, embeds, empty)
    if config.dit_batches_on == "device":
        latents = latents.to(device)
        make_batch = DeviceBatches(config, latents.shape, embeds, empty, device)

    def loss_fn(module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Flow-matching MSE on the velocity ``noise - x0``, through the one model-call contract
        (:class:`WanDenoiser`: per-row, per-token timesteps ``1000 sigma``, 0 on an I2V row's frame 0)."""
        denoiser = WanDenoiser(transformer, forward_module=module)
        x0 = latents[batch["index"]].to(device)
        text, sigma, noise = batch["text"], batch["sigma"].to(device), batch["noise"].to(device)
        rows = x0.shape[0]  # dit_batch, or its share under several processes
        x_t = add_noise(x0, noise, sigma.view(-1, 1, 1, 1, 1))
        mask = first_frame_mask(tuple(x0.shape), device=device).expand(rows, -1, -1, -1, -1).clone()
        i2v = batch["i2v"].to(device)
        mask[~i2v] = 1.0
        x_t = torch.where(mask.bool(), x_t, x0)  # I2V rows: clean latent frame 0 (pin_first_frame per row)
        with _autocast(config, device, "dit"):
            v = denoiser.forward_rows(x_t, denoiser.row_timesteps(sigma, mask), text.to(device), {})
        err = (v.float() - (noise - x0)).pow(2) * mask
        return err.sum() / (mask.sum() * x0.shape[1]).clamp_min(1)

    sample_rows = [0, min(1, len(latents) - 1)]

    def sample(step: int) -> np.ndarray:
        """Two cached clips (decoded latents) over the transformer's one-step x0 from sigma 0.5 (T2V)."""
        denoiser = WanDenoiser(transformer)
        x0 = latents[sample_rows].to(device)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(config.seed)).to(device)
        sigma = torch.full((len(sample_rows),), 0.5, device=device)
        x_t = add_noise(x0, noise, 0.5)
        text = torch.zeros(len(sample_rows), make_batch.width, empty.shape[-1])
        for row, i in enumerate(sample_rows):
            text[row, : embeds[i].shape[0]] = embeds[i].float()
        v = denoiser.forward_rows(x_t, denoiser.row_timesteps(sigma), text.to(device), {})
        predicted = x_t - 0.5 * v
        videos = [_decode(components.vae, z[None]) for z in (*x0, *predicted)]
        return _frames_grid(videos)

    optimizer = torch.optim.AdamW(transformer.parameters(), lr=config.dit_lr, weight_decay=0.0)
    part = Part(transformer, optimizer, lr=_schedule(config.dit_lr, config.dit_steps, config))
    return _run_stage(
        "dit",
        part,
        config.dit_steps,
        state_dir,
        config,
        make_batch,
        loss_fn,
        progress,
        budget,
        device,
        sample=sample if config.sample_every else None,
    )


class HostBatches:
    """The transformer's batches drawn with numpy on the host (``dit_batches_on: host``, every CPU run).

    Batch ``step`` is a pure function of ``(seed, "dit", step)``: clip indices, then per row the caption
    or (with probability ``text_dropout``) the empty prompt, zero-padded to the longest cached caption,
    then noise levels (half uniform, half shifted by ``train_shift``), noise and the I2V rows."""

    def __init__(
        self,
        config: ShapesTrainConfig,
        latent_shape: torch.Size,
        embeds: list[torch.Tensor],
        empty: torch.Tensor,
    ) -> None:
        self.config, self.embeds, self.empty = config, embeds, empty
        self.clips, self.latent_shape = latent_shape[0], tuple(latent_shape[1:])
        self.width = max(e.shape[0] for e in embeds)

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        config, rows = self.config, self.config.dit_batch
        rng = _generator(config.seed, "dit", step)
        index = rng.integers(0, self.clips, rows)
        text = torch.zeros(rows, self.width, self.empty.shape[-1])
        for row, i in enumerate(index):
            states = self.empty if rng.random() < config.text_dropout else self.embeds[i].float()
            text[row, : states.shape[0]] = states
        u = torch.from_numpy(rng.uniform(0.0, 1.0, rows)).float()
        sigma = torch.where(torch.from_numpy(rng.random(rows) < 0.5), u, shift_sigmas(u, config.train_shift))
        noise = torch.from_numpy(rng.standard_normal((rows, *self.latent_shape))).float()
        i2v = torch.from_numpy(rng.random(rows) < config.i2v_prob)
        return {"index": torch.from_numpy(index), "text": text, "sigma": sigma, "noise": noise, "i2v": i2v}


class DeviceBatches(HostBatches):
    """The transformer's batches drawn on the training device (``dit_batches_on: device``).

    Batch ``step`` is a pure function of ``(seed, step)`` and the device type: a ``torch.Generator`` on the
    device, seeded from the same ``(seed, "dit", step)`` key as the host batches, draws the clip indices,
    caption dropout, noise levels, noise and I2V rows in that order. The caption states of every cached
    clip (zero-padded, as the host batches pad them) and the empty prompt's sit in one table on the
    device, so a batch's text is one gather. The same rows are drawn as the host batches draw (same
    distributions), not the same values."""

    def __init__(
        self,
        config: ShapesTrainConfig,
        latent_shape: torch.Size,
        embeds: list[torch.Tensor],
        empty: torch.Tensor,
        device: torch.device,
    ) -> None:
        super().__init__(config, latent_shape, embeds, empty)
        self.device = device
        table = torch.zeros(len(embeds) + 1, self.width, empty.shape[-1])
        for row, states in enumerate([*embeds, empty]):
            table[row, : states.shape[0]] = states.float()
        self.text = table.to(device)  # row len(embeds): the empty prompt (caption dropout)

    def seed(self, step: int) -> int:
        """The generator's seed of ``step``: from the host batches' key ``(seed, "dit", step)``."""
        key = [self.config.seed, sum(map(ord, "dit")), step]
        return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> 1)

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        config, device, rows = self.config, self.device, self.config.dit_batch
        gen = torch.Generator(device=device).manual_seed(self.seed(step))

        def uniform() -> torch.Tensor:
            return torch.rand(rows, generator=gen, device=device)

        index = torch.randint(0, self.clips, (rows,), generator=gen, device=device)
        dropped = uniform() < config.text_dropout
        text = self.text[torch.where(dropped, self.clips, index)]
        u = uniform()
        sigma = torch.where(uniform() < 0.5, u, shift_sigmas(u, config.train_shift))
        noise = torch.randn((rows, *self.latent_shape), generator=gen, device=device)
        i2v = uniform() < config.i2v_prob
        return {"index": index, "text": text, "sigma": sigma, "noise": noise, "i2v": i2v}


@torch.no_grad()
def _decode(vae: torch.nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """A normalised latent ``(1, 48, T', H', W')`` (the cache's) decoded to a clip in [-1, 1] (CPU)."""
    mean = torch.tensor(vae.config.latents_mean, device=latent.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=latent.device).view(1, -1, 1, 1, 1)
    return vae.decode(latent * std + mean).sample.clamp(-1, 1).cpu()


# -- driver -------------------------------------------------------------------------------------


def build_init(config: ShapesTrainConfig, init_dir: Path) -> None:
    """The run's untrained model folder (all components seeded from ``config.seed``), at the sizes of
    ``config``; ``train_shapes`` makes it once per run folder, ``benchmarks/gpu_toy_train.py`` to probe."""
    from flowstudio.worlds.captions import VOCABULARY

    build_tiny_checkpoint(
        init_dir,
        seed=config.seed,
        num_layers=config.num_layers,
        num_attention_heads=config.num_attention_heads,
        attention_head_dim=config.attention_head_dim,
        text_dim=config.text_dim,
        ffn_dim=config.ffn_dim,
        freq_dim=config.freq_dim,
        patch_size=config.dit_patch_size,
        vae_base_dim=config.vae_base_dim,
        vae_decoder_base_dim=config.vae_decoder_base_dim,
        vae_num_res_blocks=config.vae_num_res_blocks,
        text_encoder_layers=config.text_encoder_layers,
        text_encoder_heads=config.text_encoder_heads,
        sharded=False,
        overwrite=True,
        vocabulary=tuple(VOCABULARY),
    )


@dataclass
class TrainResult:
    finished: bool
    model_dir: Path | None
    summary: dict[str, Any]


def train_shapes(
    out: str | Path,
    config: ShapesTrainConfig | None = None,
    *,
    device: str | None = None,
    budget: Budget | None = None,
    progress: bool = True,
    reuse_stages_from: str | Path | None = None,
    vae_from: str | Path | None = None,
    dit_from: str | Path | None = None,
) -> TrainResult:
    """Run or resume every stage into ``out``; exports ``out/model`` once all stages are complete.

    A GPU is used when one is visible (``device=None``); otherwise the CPU. ``budget`` bounds this
    invocation (steps or seconds); run again with the same ``out`` to continue.

    ``reuse_stages_from``: a finished earlier run whose VAE and latent cache this run takes over, so
    that only the transformer is trained (e.g. a wider one). See :func:`reuse_stages`.

    ``vae_from``: a trained model folder (e.g. the shipped ``flowstudio/assets/toy-shapes``) whose VAE
    this run takes as its finished VAE stage; the latent cache is re-encoded. See :func:`take_vae_from`.

    When ``config.vae_steps`` is past the step the model's VAE was trained to, ``vae_from`` instead
    *trains that VAE on* (a warm restart with fresh AdamW moments; :data:`VAE_SCHEDULE_FIELDS` may differ
    from the model's), and the latent cache and transformer are then made anew on it.

    ``dit_from``: a trained model folder whose VAE (as ``vae_from``) *and* transformer this run takes:
    the transformer stage resumes from the model's weights at the step it was trained to, so a shipped
    model can be trained on without its run folder. See :func:`take_transformer_from`. With
    ``reuse_stages_from``, the VAE and latent cache come from that run instead, whose VAE must have
    started from the model's (:func:`check_vae_lineage`): the model's transformer then trains on the
    latents of its VAE trained on, which stay close to the ones it learned (a fine-tune, not a new run).
    """
    config = config or ShapesTrainConfig()
    if dit_from is not None and reuse_stages_from is None:
        if vae_from is not None and Path(vae_from) != Path(dit_from):
            raise InputError("dit_from takes the VAE of the same model folder; leave vae_from unset")
        vae_from = dit_from
        summary_file = Path(dit_from) / "training_summary.json"  # (missing: take_vae_from says so below)
        trained_vae = int(_trained_config(Path(dit_from))["vae_steps"]) if summary_file.is_file() else None
        if trained_vae is not None and config.vae_steps > trained_vae:  # refused before the folder is made
            raise InputError(
                f"dit_from takes {dit_from}'s VAE as it is, and this configuration's vae_steps "
                f"({config.vae_steps}) trains that VAE on from step {trained_vae}. Train the VAE on first "
                "(vae_from, in its own run folder), then give that run as reuse_stages_from with dit_from"
            )
    if reuse_stages_from is not None and vae_from is not None:
        raise InputError(
            "give either reuse_stages_from (a run folder) or vae_from / dit_from (a model folder), not both"
        )
    if reuse_stages_from is not None and dit_from is not None:  # a VAE trained on, then its transformer
        check_vae_lineage(Path(reuse_stages_from), Path(dit_from))
    budget = budget or Budget()
    out = Path(out)
    device_ = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    state_dir = out / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    config_file = out / "config.json"
    if config_file.exists() and not _same_run(json.loads(config_file.read_text()), config):
        raise InputError(
            f"{out} holds a run with another configuration ({config_file}); "
            "use a new output folder or the same configuration to resume"
        )
    config_file.write_text(json.dumps(dataclasses.asdict(config), indent=2))
    init_dir = out / "init"
    fresh_init = not (init_dir / "model_index.json").exists()
    if fresh_init:
        build_init(config, init_dir)
    if reuse_stages_from is not None:
        reuse_stages(Path(reuse_stages_from), config, init_dir, state_dir, replace_init=fresh_init)
    vae_trained_to: int | None = None  # the model's VAE step when this run trains that VAE on
    if vae_from is not None:
        vae_trained_to = take_vae_from(Path(vae_from), config, init_dir, state_dir, replace_init=fresh_init)
    if dit_from is not None:
        take_transformer_from(Path(dit_from), config, state_dir)
    components = load_components(init_dir, device=device_, dtype=torch.float32)
    components.text_encoder.requires_grad_(False)
    summary: dict[str, Any] = {"config": dataclasses.asdict(config), "device": str(device_), "seconds": {}}
    if dit_from is not None:  # the lineage: whose transformer this run trains on
        summary["dit_from"] = str(dit_from)
    if vae_trained_to is not None:  # the lineage: whose VAE this run trains on, from which step
        summary["vae_from"] = {"model": str(vae_from), "step": vae_trained_to}
    curves: dict[str, list[float]] = {}
    held_out: dict[str, list[list[float]]] = {}

    def finish(done: bool, model_dir: Path | None) -> TrainResult:
        summary.update(
            {
                "finished": done,
                "model_dir": str(model_dir) if model_dir else None,
                **{f"final_{k}_loss": _tail(v) for k, v in curves.items()},
                "held_out": {k: v for k, v in held_out.items() if v},
            }
        )
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        if model_dir is not None:  # the model folder records how it was trained (its size, --vae-from)
            from flowstudio.models import TRAINING_SUMMARY

            (model_dir / TRAINING_SUMMARY).write_text(json.dumps(summary, indent=2))
        _plot_losses(curves, out / "losses.png", summary["held_out"])
        return TrainResult(done, model_dir, summary)

    # 1. VAE
    start = time.perf_counter()
    curves["vae"], done, held_out["vae"] = train_vae(
        components.vae, config, state_dir, device_, budget, progress
    )
    summary["seconds"]["vae"] = time.perf_counter() - start
    if not done:
        return finish(False, None)
    components.vae.requires_grad_(False)
    set_latent_statistics(components.vae, config, device_)
    if vae_from is not None and vae_trained_to is None:  # taken as it is: it must reproduce the model's
        check_latent_statistics(components.vae, Path(vae_from))
    # 2. latent cache
    start = time.perf_counter()
    cache = build_latent_cache(components, config, state_dir / "latents.pt", device_, progress)
    if reuse_stages_from is not None:
        check_latent_cache(components, cache, config, device_)
    summary["seconds"]["latents"] = time.perf_counter() - start
    # 3. transformer
    start = time.perf_counter()
    curves["dit"], done, held_out["dit"] = train_transformer(
        components, cache, config, state_dir, device_, budget, progress
    )
    summary["seconds"]["dit"] = time.perf_counter() - start
    if not done:
        return finish(False, None)
    # 4. export
    export_model(components, init_dir, out / "model")
    return finish(True, out / "model")


#: Fields that only concern the transformer stage: a run may differ from the one it reuses here.
TRANSFORMER_FIELDS = frozenset(
    {
        "num_layers",
        "num_attention_heads",
        "attention_head_dim",
        "ffn_dim",
        "freq_dim",
        "dit_patch_size",
        "dit_autocast",
        "dit_steps",
        "dit_batch",
        "dit_lr",
        "i2v_prob",
        "text_dropout",
        "train_shift",
        "dit_batches_on",
        "checkpoint_every",
        "log_every",
    }
)
#: Fields of the VAE's schedule that a run training a model folder's VAE on may set anew
#: (:func:`take_vae_from`): how far it trains, and over how many final steps it sees whole clips.
VAE_SCHEDULE_FIELDS = frozenset({"vae_steps", "vae_full_clip_steps"})
#: Fields that change how a run is executed, never its result: a run may resume with other values.
RUNTIME_FIELDS = frozenset(
    {
        "data_workers",
        "cache_batch",
        "checkpoint_every",
        "log_every",
        "eval_every",
        "eval_clips",
        "sample_every",
    }
)


def reuse_stages(
    source: Path, config: ShapesTrainConfig, init_dir: Path, state_dir: Path, *, replace_init: bool = True
) -> None:
    """Take over a finished run's VAE stage and latent cache, so only the transformer trains.

    Why: the VAE and the cache are two thirds of a CPU run, and they do not depend on the transformer.
    The earlier run's *initial* VAE, text encoder and tokenizer are copied into this run's ``init``
    (the cached caption states were made by that text encoder; ``build_tiny_checkpoint`` seeds all
    components from one random stream, so a new transformer size would otherwise change them), then
    its ``state/vae.pt`` and ``state/latents.pt``. The two configurations must agree on every field
    outside :data:`TRANSFORMER_FIELDS` (note ``lr_decay_fraction`` applies to both stages).
    """
    import shutil

    stored_file = source / "config.json"
    needed = [
        stored_file,
        source / "init" / "model_index.json",
        source / "state" / "vae.pt",
        source / "state" / "latents.pt",
    ]
    _require(needed, f"cannot reuse stages from {source}", "give a finished run folder")
    _check_same_outside_transformer(json.loads(stored_file.read_text()), config, source)
    vae_state = torch.load(source / "state" / "vae.pt", map_location="cpu", weights_only=False)
    if vae_state["step"] < config.vae_steps:
        raise InputError(
            f"cannot reuse stages from {source}: its VAE stage is unfinished "
            f"({vae_state['step']} of {config.vae_steps} steps); finish that run first"
        )
    if replace_init:
        for name in ("vae", "text_encoder", "tokenizer"):
            shutil.rmtree(init_dir / name)
            shutil.copytree(source / "init" / name, init_dir / name)
    for name in ("vae.pt", "latents.pt"):
        if not (state_dir / name).exists():
            shutil.copy2(source / "state" / name, state_dir / name)
    logger.info("reusing the VAE stage and latent cache of %s", source)


def _require(paths: list[Path], what: str, hint: str) -> None:
    """Refuse with ``what: missing [...]; hint`` when any of ``paths`` does not exist."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InputError(f"{what}: missing {missing}; {hint}")


def _check_same_outside_transformer(
    stored: dict[str, Any], config: ShapesTrainConfig, source: Path, also_free: frozenset[str] = frozenset()
) -> None:
    """Refuse to take stages from ``source`` when its configuration ``stored`` differs from ``config``
    outside :data:`TRANSFORMER_FIELDS`, the runtime-only keys and ``also_free``."""
    # fields added since the earlier run was made held their defaults there
    stored = {**dataclasses.asdict(ShapesTrainConfig()), **stored}
    mine = dataclasses.asdict(config)
    free = TRANSFORMER_FIELDS | RUNTIME_FIELDS | also_free
    differing = sorted(k for k, v in mine.items() if k not in free and stored.get(k) != v)
    if differing:
        raise InputError(
            f"cannot reuse stages from {source}: its configuration differs outside the transformer in "
            f"{ {k: (stored.get(k), mine[k]) for k in differing} } (earlier run, this run); "
            "use the earlier run's values for these keys"
        )


def _trained_config(model_dir: Path) -> dict[str, Any]:
    """The configuration a model folder's ``training_summary.json`` records, with the fields added since
    at their defaults (the values they had in effect)."""
    summary = json.loads((model_dir / "training_summary.json").read_text())
    return {**dataclasses.asdict(ShapesTrainConfig()), **summary.get("config", {})}


def take_vae_from(
    model_dir: Path, config: ShapesTrainConfig, init_dir: Path, state_dir: Path, *, replace_init: bool = True
) -> int | None:
    """Start a run from a trained model folder's VAE: its VAE stage counts as finished, the latent cache
    is re-encoded, and only the transformer trains. Returns None then.

    When ``config.vae_steps`` is past the step the model's VAE was trained to (its ``vae_steps``), the
    VAE stage instead resumes from the model's VAE at that step and trains on to ``config.vae_steps``;
    that step is returned. The continuation is a warm restart (the learning rate follows ``config``'s
    schedule, so it returns to ``vae_lr`` until the new cosine tail, and AdamW starts with empty
    moments), and the steps the model already took must keep their meaning: the short-crop prefix
    (``vae_steps - vae_full_clip_steps``) must equal the model's, so only whole-clip steps are added.
    Training on is there because the VAE's held-out PSNR was still rising at a constant rate when its
    last run ended (issue 13, docs/toy_model.md).

    Why: a run folder's ``state/`` is not shipped (and was lost once with a wiped runs folder), while
    the model folder is; this is :func:`reuse_stages` for a model folder. Its ``training_summary.json``
    (written with the exported model) must hold a configuration equal to ``config`` outside the transformer
    stage. The model's VAE, text encoder and tokenizer replace this run's initial ones (the text
    encoder is frozen during training, so the shipped one is the one that made the captions'
    states), and ``state/vae.pt`` is written as a finished stage holding the model's VAE weights.
    """
    import shutil

    needed = [
        model_dir / "model_index.json",
        model_dir / "training_summary.json",
        *(model_dir / name for name in ("vae", "text_encoder", "tokenizer")),
    ]
    _require(
        needed,
        f"cannot take the VAE of {model_dir}",
        "give a model folder exported by "
        "`flowstudio worlds train shapes` (e.g. flowstudio/assets/toy-shapes)",
    )
    stored = _trained_config(model_dir)
    trained = int(stored["vae_steps"])
    if config.vae_steps < trained:
        raise InputError(
            f"{model_dir}'s VAE was trained {trained} steps and this configuration's vae_steps is "
            f"{config.vae_steps}: use {trained} to take it as it is, or more to train it on"
        )
    continuing = config.vae_steps > trained
    _check_same_outside_transformer(
        stored, config, model_dir, also_free=VAE_SCHEDULE_FIELDS if continuing else frozenset()
    )
    prefix = config.vae_steps - config.vae_full_clip_steps
    model_prefix = trained - int(stored["vae_full_clip_steps"])
    if continuing and prefix != model_prefix:
        raise InputError(
            f"training {model_dir}'s VAE on must keep its first {model_prefix} steps of short crops "
            f"(vae_steps - vae_full_clip_steps); this configuration makes it {prefix}: set "
            f"vae_full_clip_steps to {config.vae_steps - model_prefix}"
        )
    if replace_init:
        for name in ("vae", "text_encoder", "tokenizer"):
            shutil.rmtree(init_dir / name)
            shutil.copytree(model_dir / name, init_dir / name)
    vae_file = state_dir / "vae.pt"
    if vae_file.exists():  # taken before (or trained on since): resume that
        return trained if continuing else None
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(model_dir / "vae", torch_dtype=torch.float32)
    # empty AdamW moments (see the docstring); never stepped when the stage is taken as finished
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    _write_stage_state(vae_file, "vae", vae, optimizer, trained, vae_from=str(model_dir))
    if continuing:
        logger.info("taking the VAE of %s at step %d to train on", model_dir, trained)
        return trained
    logger.info("taking the VAE of %s as this run's finished VAE stage", model_dir)
    return None


def _write_stage_state(
    path: Path, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, **origin: str
) -> None:
    """A stage's state file (the trainer's checkpoint format) holding ``model`` at ``step``, with no
    history and no random state; ``origin`` records where the weights came from."""
    from flowstudio.train import checkpoint as ckpt

    ckpt.atomic_save(
        {
            "format": ckpt.FORMAT,
            "step": step,
            "models": {name: model.state_dict()},
            "optimizers": {name: optimizer.state_dict()},
            "rng": None,
            "history": {},
            "evals": [],
            **origin,
        },
        path,
    )


def take_transformer_from(model_dir: Path, config: ShapesTrainConfig, state_dir: Path) -> None:
    """Start the transformer stage from a trained model folder's transformer, at the step it was
    trained to (its ``training_summary.json``'s ``dit_steps``), so that ``config`` trains it on.

    Why: the model folder is what is shipped and kept; a run folder (with the optimizer's state) may be
    gone. The continuation differs from resuming that run folder in two ways, both stated here: AdamW
    starts with empty moments, and the weights are the folder's (fp16 for the shipped toy, upcast to
    float32). Batches are a pure function of the step and the latent cache is re-encoded by the same
    VAE (:func:`take_vae_from`, :func:`check_latent_statistics`), so step ``k`` sees the batch it would
    have seen. The transformer's architecture must equal ``config``'s, and ``config.dit_steps`` must be
    past the model's step."""
    from diffusers import WanTransformer3DModel

    dit_file = state_dir / "dit.pt"
    if dit_file.exists():  # taken before (or trained on since): resume that
        return
    _require(
        [model_dir / "transformer", model_dir / "training_summary.json"],
        f"cannot take the transformer of {model_dir}",
        "give a model folder exported by `flowstudio worlds train shapes` "
        "(e.g. flowstudio/assets/toy-shapes)",
    )
    summary = json.loads((model_dir / "training_summary.json").read_text())
    trained = int(summary.get("config", {}).get("dit_steps", 0))
    if trained <= 0 or not summary.get("finished", False):
        raise InputError(f"{model_dir}/training_summary.json does not record a finished transformer stage")
    if config.dit_steps <= trained:
        raise InputError(
            f"{model_dir}'s transformer was trained {trained} steps and this configuration's dit_steps is "
            f"{config.dit_steps}: set dit_steps above {trained} to train it on"
        )
    transformer = WanTransformer3DModel.from_pretrained(model_dir / "transformer", torch_dtype=torch.float32)
    mine = {
        "num_layers": config.num_layers,
        "num_attention_heads": config.num_attention_heads,
        "attention_head_dim": config.attention_head_dim,
        "ffn_dim": config.ffn_dim,
        "freq_dim": config.freq_dim,
        "patch_size": (1, config.dit_patch_size, config.dit_patch_size),
    }
    theirs = {k: transformer.config[k] for k in mine} | {
        "patch_size": tuple(transformer.config["patch_size"])
    }
    differing = {k: (theirs[k], v) for k, v in mine.items() if theirs[k] != v}
    if differing:
        raise InputError(
            f"the transformer of {model_dir} has another architecture than this configuration: {differing} "
            "(model, configuration); use the model's transformer settings"
        )
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=config.dit_lr, weight_decay=0.0)
    # empty AdamW moments: see the docstring
    _write_stage_state(dit_file, "dit", transformer, optimizer, trained, dit_from=str(model_dir))
    logger.info(
        "taking the transformer of %s at step %d; training on to %d", model_dir, trained, config.dit_steps
    )


def check_vae_lineage(run_dir: Path, model_dir: Path) -> None:
    """Refuse to train ``model_dir``'s transformer on ``run_dir``'s latents unless that run's VAE started
    from the model's VAE (``run_dir/init/vae`` holds the model's weights, as :func:`take_vae_from`
    leaves it): a transformer only fits latents of the VAE it learned on, or of that VAE trained on."""
    from safetensors.torch import load_file

    name = "diffusion_pytorch_model.safetensors"
    paths = [run_dir / "init" / "vae" / name, model_dir / "vae" / name]
    _require(paths, "cannot check whose VAE the run trained", "give a run folder and a model folder")
    theirs, ours = (load_file(path) for path in paths)
    if theirs.keys() != ours.keys() or any(not torch.equal(theirs[k], ours[k]) for k in ours):
        raise InputError(
            f"the VAE of {run_dir} did not start from {model_dir}'s VAE, so {model_dir}'s transformer was "
            "trained on other latents; give the run made with --vae-from that model"
        )


def check_latent_statistics(vae: torch.nn.Module, model_dir: Path, tolerance: float = 1e-3) -> None:
    """The per-channel latent mean/std just measured must equal those the model folder ships: a VAE
    that does not reproduce them was trained on another world or changed since."""
    shipped = json.loads((model_dir / "vae" / "config.json").read_text())
    for key in ("latents_mean", "latents_std"):
        ours, theirs = np.asarray(vae.config[key]), np.asarray(shipped.get(key, []))
        if ours.shape != theirs.shape or np.abs(ours - theirs).max() > tolerance:
            raise InputError(
                f"the VAE taken from {model_dir} does not reproduce its shipped {key} on this run's "
                "world (another seed or world settings?); use that model's training configuration"
            )


@torch.no_grad()
def check_latent_cache(
    components, cache: dict[str, Any], config: ShapesTrainConfig, device: torch.device, clips: int = 2
) -> None:
    """Re-encode the first ``clips`` cached clips; refuse a cache this VAE or text encoder did not make."""
    for i in range(min(clips, len(cache["latents"]))):
        latent, embeds, text = _encode_clip(components, config, i, device)
        latent_error = float((latent - cache["latents"][i].float()).abs().max())
        text_error = float((embeds - cache["embeds"][i].float()).abs().max())
        if text != cache["captions"][i] or latent_error > 0.05 or text_error > 0.05:
            raise InputError(
                f"the reused latent cache does not match this run's VAE/text encoder (clip {i}: caption "
                f"{'same' if text == cache['captions'][i] else 'differs'}, latent error {latent_error:.3g}, "
                f"text error {text_error:.3g}); start a fresh run folder"
            )


def _same_run(stored: dict[str, Any], config: ShapesTrainConfig) -> bool:
    """A stored run matches when every field but the runtime ones agrees; fields added since then must
    hold their defaults."""
    defaults = ShapesTrainConfig()
    return all(
        stored[k] == v if k in stored else v == getattr(defaults, k)
        for k, v in dataclasses.asdict(config).items()
        if k not in RUNTIME_FIELDS
    )


def _tail(losses: list[float], n: int = 50) -> float | None:
    return float(np.mean(losses[-n:])) if losses else None


def export_model(components, init_dir: Path, model_dir: Path) -> None:
    """Write the trained weights into a diffusers-format folder with the reference config keys (fp16)."""
    import shutil

    from flowstudio.models.factory import _rewrite_config
    from flowstudio.weights import WAN22_TI2V_5B_CONFIGS

    tmp = model_dir.with_name(model_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(init_dir, tmp)
    for name in ("transformer", "vae"):
        shutil.rmtree(tmp / name)
        module = getattr(components, name)
        # the VAE stays fp32 (Wan recommends it); the transformer ships in fp16 to halve the size
        module.to(torch.float16 if name == "transformer" else torch.float32).save_pretrained(tmp / name)
        module.float()
        _rewrite_config(
            tmp / name / "config.json",
            WAN22_TI2V_5B_CONFIGS[name],
            extra={"latents_mean": module.config.latents_mean, "latents_std": module.config.latents_std}
            if name == "vae"
            else None,
        )
    if model_dir.exists():
        shutil.rmtree(model_dir)
    os.replace(tmp, model_dir)
    logger.info("exported the toy model to %s", model_dir)


def export_snapshot(run_dir: str | Path, model_dir: str | Path) -> dict[str, Any]:
    """Export the transformer of a run *in progress* (its latest ``state/dit.pt``) with the run's VAE
    into a diffusers-format model folder, to measure it (``toy_quality.py``) while training goes on.

    The model folder's ``training_summary.json`` says it is a snapshot (``snapshot_step`` of
    ``dit_steps``), so that it is never mistaken for a finished run. Reads only: the run may be
    training meanwhile (checkpoints are written atomically).
    """
    from flowstudio.models import TRAINING_SUMMARY
    from flowstudio.train import checkpoint as ckpt

    run_dir, model_dir = Path(run_dir), Path(model_dir)
    needed = [
        run_dir / "config.json",
        run_dir / "init" / "model_index.json",
        run_dir / "state" / "vae.pt",
        run_dir / "state" / "dit.pt",
    ]
    _require(
        needed,
        f"cannot export a snapshot of {run_dir}",
        "give a run folder whose transformer stage has saved a checkpoint",
    )
    stored = json.loads((run_dir / "config.json").read_text())
    known = {f.name for f in dataclasses.fields(ShapesTrainConfig)}
    config = ShapesTrainConfig(**{k: v for k, v in stored.items() if k in known})
    components = load_components(run_dir / "init", device="cpu", dtype=torch.float32)
    states = {}
    for name in ("vae", "dit"):
        saved = ckpt.read(run_dir / "state" / f"{name}.pt", [name])
        states[name] = (saved["models"][name], int(saved["step"]))
    if states["vae"][1] < config.vae_steps:
        raise InputError(
            f"{run_dir}: its VAE stage is unfinished ({states['vae'][1]} of {config.vae_steps} steps)"
        )
    components.vae.load_state_dict(states["vae"][0])
    components.transformer.load_state_dict(states["dit"][0])
    set_latent_statistics(components.vae, config, torch.device("cpu"))  # as the run measured them
    export_model(components, run_dir / "init", model_dir)
    summary = {
        "config": dataclasses.asdict(config),
        "finished": False,
        "snapshot_step": states["dit"][1],
        "dit_steps": config.dit_steps,
        "run": str(run_dir.resolve()),
        "note": "a snapshot of a transformer stage in progress (export_snapshot), not a finished model",
    }
    (model_dir / TRAINING_SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary


def _plot_losses(
    curves: dict[str, list[float]], path: Path, held_out: dict[str, list[list[float]]] | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5), squeeze=False)
    for ax, (name, losses) in zip(axes[0], curves.items(), strict=True):
        window = max(1, len(losses) // 100)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.semilogy(smooth)
        ax.set(title=f"{name} loss", xlabel="step")
        ax.grid(True, alpha=0.3)
        points = (held_out or {}).get(name)
        if points:  # the held-out curve on a second axis (VAE: whole-clip PSNR, dB)
            twin = ax.twinx()
            twin.plot(*zip(*points, strict=True), color="tab:red", marker="o", markersize=3)
            twin.set_ylabel("held-out PSNR (dB)", color="tab:red")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
