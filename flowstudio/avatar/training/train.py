"""DualForce training on the project's one trainer (:mod:`flowstudio.train`).

``train(model_config, train_config, dataset)`` runs multimodal diffusion forcing
(:mod:`flowstudio.avatar.model.diffusion_forcing`) on full sequences with block-causal masks and the loss
terms of :mod:`flowstudio.avatar.training.losses`. Single process: ``flowstudio avatar train --config
configs/dualforce/toy.yaml``. Several GPUs with FSDP: ``accelerate launch --config_file
configs/dualforce/accelerate_fsdp.yaml -m flowstudio.avatar.training.train --config <run.yaml>`` (the
accelerate config wraps each ``WanTransformerBlock``). Mixed precision is chosen from the device:
bf16 autocast on CUDA, full precision on CPU (``mixed_precision`` overrides).

Batches and noise are drawn from a generator seeded with ``(seed, step)``, so a run resumed from
``output_dir/checkpoints/step-N/state.pt`` (model, optimizer, RNG states, loss history) continues
exactly where it stopped. A run with ``train.init_from`` starts from a previous phase's weights
(:mod:`flowstudio.avatar.training.handoff`: phase 4 from phase 2). Metrics go to ``metrics.jsonl``
and TensorBoard (``output_dir/tensorboard``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowstudio.avatar.model.audio import silent_features
from flowstudio.avatar.model.config import DualForceConfig, load_config
from flowstudio.avatar.model.diffusion_forcing import NoisedBatch, noise_batch
from flowstudio.avatar.model.dualforce import DualForceInputs, DualForceModel
from flowstudio.avatar.model.rates import BlockLayout, TokenRates
from flowstudio.avatar.model.residual import from_model_space, to_model_space
from flowstudio.avatar.training.losses import (
    LipSyncScorer,
    LossTerms,
    flame_loss,
    lip_sync_loss,
    struct_loss,
    total_loss,
    video_loss,
)
from flowstudio.avatar.training.mouth_sync import SCORERS, MouthReaderSync
from flowstudio.core.flow import x0_from_velocity
from flowstudio.errors import InputError
from flowstudio.train import Part, StepFolders, Trainer, TrainerConfig, cosine_tail, end_distributed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the ``train:`` section of a run YAML)."""

    output_dir: str = "runs/dualforce-toy"
    steps: int = 200
    batch_size: int = 2
    num_chunks: int = 3
    lr: float = 1e-3
    # the rate is constant, then falls along a cosine to a tenth of itself over this final fraction of
    # the steps (0: constant throughout, the runs before 2026-12-01; train.cosine_tail)
    lr_decay_fraction: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    grad_accum: int = 1  # micro-batches per optimiser step (each of batch_size rows)
    save_every: int = 100
    log_every: int = 10
    seed: int = 0
    mixed_precision: str = "auto"
    dataset: str = "synthetic"  # "synthetic" (smooth signals, for tests) or "talkingshapes" (the toy world)
    dataset_size: int = 8
    dataset_seed: int = 0
    # the previous phase's final folder (phase 4 starts from phase 2): see training/handoff.py. Only a
    # fresh run reads it; a resumed run continues from its own checkpoint.
    init_from: str | None = None
    # extra weight of the mouth region's latent pixels in L_video (0: off; talkingshapes only): the
    # toy's mouth is ~0.5% of the frame, so an unweighted MSE barely asks for lip motion
    mouth_weight: float = 0.0
    # probability per sample that its audio is replaced by silence (model.audio.silent_features), so
    # the model also learns an unconditional branch for audio guidance (0: off, the batch unchanged)
    audio_dropout: float = 0.0
    # a scorer for model.loss.lip_sync (None: off, the lip-sync term is 0). "mouth_reader" (talkingshapes
    # only): the analytic mouth reader in torch on the decoded predicted x0 against the true clip, the
    # per-frame mouth-interior area; "mouth_mask": the same mask compared pixel by pixel
    # (training/mouth_sync.py); on frames whose noise level is at most lip_sync_max_sigma
    lip_sync_scorer: str | None = None
    lip_sync_max_sigma: float = 0.75
    # probability per step that the batch is trained on the model's own rollout (training/self_rollout.py):
    # chunks 0..k-1 streamed by the sampler, the loss on the true chunk k (0: off, plain diffusion forcing)
    rollout_prob: float = 0.0
    rollout_steps: int | None = None  # the rollout's steps per chunk (None: forcing.inference_steps)
    # > 0: keep an exponential moving average of the weights (train.Part.ema_decay), checkpointed with
    # the run; ``final`` is then the average and ``final-raw`` the last weights (0: off, ``final`` is the
    # last weights). The toy's constant rate leaves the last weights noisy: samples swing from one
    # checkpoint to the next (docs/findings_avatar.md)
    ema_decay: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"train: unknown field(s) {unknown}; known: {sorted(known)}")
        if data.get("dataset", "synthetic") not in DATASETS:
            raise InputError(f"train.dataset must be one of {list(DATASETS)}, got {data['dataset']!r}")
        for key, what in (
            ("audio_dropout", "a probability"),
            ("lr_decay_fraction", "a fraction"),
            ("rollout_prob", "a probability"),
            ("ema_decay", "a decay"),
        ):
            value = data.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise InputError(f"train.{key} must be {what} in [0, 1], got {value!r}")
        if data.get("ema_decay", 0.0) >= 1.0:
            raise InputError(f"train.ema_decay must be below 1 (1 would never move), got {data['ema_decay']}")
        if data.get("rollout_prob", 0.0) > 0 and data.get("num_chunks", cls.num_chunks) < 2:
            raise InputError("train.rollout_prob > 0 needs train.num_chunks >= 2 (a context and a target)")
        scorer = data.get("lip_sync_scorer")
        if scorer is not None and scorer not in SCORERS:
            raise InputError(f"train.lip_sync_scorer must be one of {list(SCORERS)} or null, got {scorer!r}")
        return cls(**data)


class SyntheticTalkingDataset:
    """Clips ``{"video": (C, 1 + F, h, w), "struct": (1 + S, C_s), "audio": (1 + A, C_a)}`` whose first
    frame / row is the sink (reference latent; structure and audio rows ignored).

    Deterministic smooth synthetic clips with the shapes of real ones (until the TalkingShapes world).

    Each clip is a sum of low-frequency sinusoids in time whose phases depend on the clip index; the
    audio features are a function of the same phases, so audio, structure and video are correlated.
    """

    def __init__(self, config: DualForceConfig, num_chunks: int, size: int, seed: int = 0) -> None:
        self.config, self.size, self.seed = config, size, seed
        self.layout = BlockLayout.build(TokenRates.from_config(config.rates), 0, num_chunks, sink=True)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        cfg, lay = self.config, self.layout
        g = torch.Generator().manual_seed(self.seed * 100_003 + index)
        h, w = cfg.latent_size
        c_lat, c_s, c_a = cfg.video_input.latent_channels, cfg.struct.in_channels, cfg.audio.feature_dim
        phase = torch.rand(3, generator=g) * 2 * math.pi
        base = torch.randn(c_lat, 1, h, w, generator=g) * 0.5
        t_v = lay.video_pos.float()[None, :, None, None] / 6.25
        video = base + 0.5 * torch.sin(2 * math.pi * 0.7 * t_v + phase[0]) * torch.linspace(
            -1, 1, c_lat
        ).view(-1, 1, 1, 1)
        video[:, 0] = base[:, 0]
        t_s = lay.struct_pos.float()[:, None] / 25.0
        struct = torch.sin(2 * math.pi * 0.7 * t_s + phase[0] + torch.linspace(0, 1, c_s)[None]) * 0.8
        t_a = torch.arange(len(lay.audio_ids)).float()[:, None] / 50.0
        audio = torch.cos(2 * math.pi * 0.7 * t_a + phase[0] + torch.linspace(0, 3, c_a)[None])
        return {"video": video, "struct": struct, "audio": audio}

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        items = [self[i] for i in indices]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


DATASETS = ("synthetic", "talkingshapes")


def make_dataset(model_config: DualForceConfig, train_config: TrainConfig):
    """The dataset a run names (``train.dataset``)."""
    if train_config.dataset == "talkingshapes":
        from flowstudio.avatar.training.toy_data import TalkingShapesDataset

        return TalkingShapesDataset(
            model_config,
            train_config.num_chunks,
            train_config.dataset_size,
            train_config.dataset_seed,
            mouth_region=train_config.mouth_weight > 0,
        )
    return SyntheticTalkingDataset(
        model_config, train_config.num_chunks, train_config.dataset_size, train_config.dataset_seed
    )


def training_step(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    layout: BlockLayout,
    generator: torch.Generator,
    config: DualForceConfig | None = None,
    mouth_weight: float = 0.0,
    audio_dropout: float = 0.0,
    lip_sync_scorer: str | None = None,
    lip_sync_max_sigma: float = 0.75,
    noised: NoisedBatch | None = None,
) -> LossTerms:
    """Noise a batch frame by frame, predict velocities, and weight the loss terms.

    ``model`` is what is called: in training the trainer's prepared module (a DDP/FSDP wrapper, which
    has no ``config``: pass the model's ``config``); elsewhere a plain :class:`DualForceModel`.
    ``audio_dropout``: each sample's whole audio is replaced by silence
    (:func:`~flowstudio.avatar.model.audio.silent_features`) with this probability, drawn from
    ``generator`` after the noise (so the noise is the same as without dropout); 0 draws nothing.
    ``lip_sync_scorer``: ``"mouth_reader"`` (``"mouth_mask"``: ``per_pixel``) plugs
    :class:`~flowstudio.avatar.training.mouth_sync.MouthReaderSync` (built from the batch's true video,
    frame weights and noise levels) into ``lip_sync_loss``; ``None`` leaves the term at 0.
    ``noised``: inputs noised already (a rollout batch of :mod:`~flowstudio.avatar.training.self_rollout`);
    ``None`` draws diffusion forcing's per-frame noise from ``generator``."""
    cfg = config if config is not None else model.config
    if noised is None:
        video_in = to_model_space(batch["video"], cfg)
        noised = noise_batch(video_in, batch["struct"], layout, cfg.forcing, generator=generator)
    audio = batch["audio"]
    if audio_dropout > 0:
        # whole samples, as guidance's silent branch sees a silent stream (not silent chunks)
        drop = torch.rand(audio.shape[0], generator=generator) < audio_dropout
        audio = torch.where(drop.to(audio.device)[:, None, None], silent_features(audio), audio)
    inputs = DualForceInputs(
        video=noised.video,
        video_sigma=noised.video_sigma,
        struct=noised.struct,
        struct_sigma=noised.struct_sigma,
        audio=audio,
        layout=layout,
        reference=batch["video"][:, :, :1],
    )
    v_video, v_struct = model(inputs)
    struct_x0 = x0_from_velocity(noised.struct, noised.struct_sigma[:, :, None], v_struct)
    # the lip-sync scorer decodes frames: back to codec latents
    video_x0 = from_model_space(
        x0_from_velocity(noised.video, noised.video_sigma[:, None, :, None, None], v_video), cfg
    )
    scorer: LipSyncScorer | None = None
    if lip_sync_scorer in SCORERS:
        scorer = MouthReaderSync(
            batch["video"],
            noised.video_weight,
            noised.video_sigma,
            max_sigma=lip_sync_max_sigma,
            per_pixel=lip_sync_scorer == "mouth_mask",
        )
    elif lip_sync_scorer is not None:
        raise InputError(f"unknown lip-sync scorer {lip_sync_scorer!r}; known: {list(SCORERS)}")
    pixel_weight = None
    if mouth_weight > 0 and "mouth" in batch:  # (B, h, w): 1 everywhere, 1 + mouth_weight on the mouth
        pixel_weight = 1.0 + mouth_weight * batch["mouth"]
    return total_loss(
        cfg.loss,
        video=video_loss(v_video, noised.video_target, noised.video_weight, pixel_weight),
        struct=struct_loss(v_struct, noised.struct_target, noised.struct_weight),
        # the FLAME-style term measures keypoints in the world's units, not the tower's normalised scale
        flame=flame_loss(
            cfg.structure.denormalize(struct_x0),
            cfg.structure.denormalize(batch["struct"]),
            noised.struct_weight,
            cfg.structure,
        ),
        # the true audio: a plugged-in scorer judges the frames against the speech of the clip
        lip_sync=lip_sync_loss(scorer, video_x0, batch["audio"]),
    )


def _batch_fn(dataset: Any, train_config: TrainConfig):
    """Batch ``i``: rows drawn by a generator seeded with ``(seed, i)``, which then draws the noise."""

    def make_batch(index: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(train_config.seed * 1_000_003 + index)
        indices = torch.randint(len(dataset), (train_config.batch_size,), generator=g).tolist()
        return {"data": dataset.batch(indices), "generator": g}

    return make_batch


def train(
    model_config: DualForceConfig,
    train_config: TrainConfig,
    *,
    resume: bool = True,
    dataset: Any = None,
) -> list[dict[str, float]]:
    """Train (or resume) and return the per-step loss records of this invocation."""
    from accelerate.utils import set_seed

    out = Path(train_config.output_dir)
    if train_config.lip_sync_scorer is not None and model_config.loss.lip_sync <= 0:
        raise InputError(
            f"train.lip_sync_scorer {train_config.lip_sync_scorer!r} needs model.loss.lip_sync > 0 "
            "(the term's weight); with weight 0 it would cost time and change nothing"
        )
    set_seed(train_config.seed)
    if train_config.rollout_prob > 0 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError(
            "train.rollout_prob > 0 runs the streaming sampler on the unsharded model: single process "
            "only for now (set it to 0 for `accelerate launch` / FSDP runs)"
        )
    if dataset is None:
        if train_config.dataset == "talkingshapes" and model_config.structure.mean is None:
            from flowstudio.avatar.training.toy_data import structure_statistics

            mean, std = structure_statistics(model_config, train_config.num_chunks)
            model_config = model_config.replace({"structure": {"mean": list(mean), "std": list(std)}})
            logger.info("structure normalisation from the world's statistics (saved with the checkpoint)")
        dataset = make_dataset(model_config, train_config)
    model = DualForceModel(model_config)
    store = StepFolders(out / "checkpoints")
    if int(os.environ.get("RANK", "0")) == 0:  # one writer under a launcher (the trainer starts below)
        out.mkdir(parents=True, exist_ok=True)
        # the resolved model config (with the structure statistics computed above): what `flowstudio
        # avatar export` needs to turn any step's checkpoint into a model folder
        model_config.save(out / "model_config.json")
    if train_config.init_from and not (resume and store.latest() is not None):
        # a fresh run only: a resumed one continues from its own checkpoint (phase 2 may be gone by then)
        from flowstudio.avatar.training.handoff import init_from_phase

        init_from_phase(model, train_config.init_from)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay
    )
    settings = TrainerConfig(
        name="dualforce",
        steps=train_config.steps,
        grad_accum=train_config.grad_accum,
        grad_clip=train_config.grad_clip or None,
        mixed_precision=train_config.mixed_precision,
        checkpoint_every=train_config.save_every,
        log_every=train_config.log_every,
        progress=True,
        logdir=out / "tensorboard",
    )
    schedule = cosine_tail(train_config.lr, train_config.steps, train_config.lr_decay_fraction)
    trainer = Trainer(
        settings, {"model": Part(model, optimizer, lr=schedule, ema_decay=train_config.ema_decay)}
    )

    def loss_fn(module: torch.nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        g = batch["generator"]
        if trainer.accelerator.num_processes > 1:  # each process noises its own rows: its own stream
            g = torch.Generator().manual_seed(g.initial_seed() * 64 + trainer.accelerator.process_index)
        data = {k: v.to(trainer.device) for k, v in batch["data"].items()}
        layout, noised = dataset.layout, None
        # drawn only when rollouts are on, so runs without them keep their exact noise stream
        if train_config.rollout_prob > 0 and float(torch.rand((), generator=g)) < train_config.rollout_prob:
            from flowstudio.avatar.training.self_rollout import rollout_batch

            data, noised, layout = rollout_batch(
                trainer.accelerator.unwrap_model(module),
                data,
                model_config,
                train_config.num_chunks,
                g,
                steps=train_config.rollout_steps,
            )
        terms = training_step(
            module,
            data,
            layout,
            g,
            model_config,
            mouth_weight=train_config.mouth_weight,
            audio_dropout=train_config.audio_dropout,
            lip_sync_scorer=train_config.lip_sync_scorer,
            lip_sync_max_sigma=train_config.lip_sync_max_sigma,
            noised=noised,
        )
        return terms.__dict__

    records: list[dict[str, float]] = []

    def on_step(step: int, metrics: dict[str, float]) -> None:
        record = {"step": float(step), **metrics}
        records.append(record)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if step % train_config.log_every == 0 or step == 1:
            logger.info(
                "step %d loss %.4f (video %.4f struct %.4f flame %.4f lip_sync %.4f)",
                step,
                record["total"],
                record["video"],
                record["struct"],
                record["flame"],
                record["lip_sync"],
            )

    trainer.fit(
        lambda ctx, batches: ctx.accumulate("model", batches, loss_fn, loss_key="total"),
        _batch_fn(dataset, train_config),
        store,
        on_step=on_step,
        resume=resume,
    )
    trainer.accelerator.wait_for_everyone()
    if trainer.is_main_process:
        average = trainer.ema("model")
        if average is not None:
            model.save_pretrained(out / "final-raw")
            average.save_pretrained(out / "final")
        else:
            model.save_pretrained(out / "final")
    return records


def train_from_yaml(path: str | Path, *, resume: bool = True) -> list[dict[str, float]]:
    """Read ``preset`` / ``model`` / ``train`` sections of a run YAML and train."""
    model_config, rest = load_config(path)
    return train(model_config, TrainConfig.from_dict(rest.get("train", {}) or {}), resume=resume)


if __name__ == "__main__":  # accelerate launch -m flowstudio.avatar.training.train --config run.yaml
    import argparse

    parser = argparse.ArgumentParser(description="Train DualForce from a run YAML.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--no-resume", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    train_from_yaml(args.config, resume=not args.no_resume)
    end_distributed()
