"""Training on the model's own rollouts: the context a chunk is trained on is what the sampler made.

Diffusion forcing trains every chunk on a context of *true* frames at random noise levels, but a
stream conditions every chunk on the model's *own* earlier chunks. Their errors (the toy's token-cell
mosaic, a drifting identity) are a context the model never saw in training, and it copies and
amplifies them chunk after chunk (exposure bias; ``docs/findings_avatar.md`` shows that teacher-forced
one-step predictions are clean while rollouts are not). Self-Forcing (Huang et al. 2025) and CausVid
(Yin et al. 2025) close the gap by training on the model's own rollouts; they score the rollout with a
distribution-matching loss against a bidirectional teacher. The toy has the true continuation of every
clip, so this module keeps the plain flow-matching target (scheduled sampling for diffusion):

1. draw one target chunk ``k`` in ``[1, N)`` for the batch (``N`` chunks per clip);
2. per clip, stream chunks ``0 .. k-1`` with the sampler exactly as inference does
   (:func:`~flowstudio.avatar.inference.streaming.stream_latents`, the checkpoint's audio guidance,
   steps and context level; no gradient);
3. build the training sequence ``[sink, generated chunks 0..k-1, true chunk k]``: the generated chunks
   re-noised to ``forcing.context_sigma`` as the sampler commits them, chunk ``k`` noised frame by frame
   as diffusion forcing draws it, the video loss on chunk ``k`` only. The structure has no loss on a
   rollout batch: the rolled-out head motion is a legitimately different one from the truth's (it is
   not determined by the audio), and the truth's continuation of another past teaches a jump; the
   structure tower keeps training on the plain diffusion-forcing batches.

The block-causal mask makes chunk ``k``'s prediction from this full-sequence call equal to the streamed
one (cached == full), so the model learns to continue *its own* past toward the true next chunk: to
lean on the reference and the audio where its context has gone wrong.
"""

from __future__ import annotations

import torch

from flowstudio.avatar.inference.streaming import context_sample, stream_latents
from flowstudio.avatar.model.config import DualForceConfig
from flowstudio.avatar.model.diffusion_forcing import NoisedBatch, noise_batch
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.avatar.model.rates import BlockLayout, TokenRates
from flowstudio.avatar.model.residual import codec_to_generated, to_model_space


def rollout_batch(
    model: DualForceModel,
    batch: dict[str, torch.Tensor],
    config: DualForceConfig,
    num_chunks: int,
    generator: torch.Generator,
    *,
    steps: int | None = None,
) -> tuple[dict[str, torch.Tensor], NoisedBatch, BlockLayout]:
    """The batch cut to chunks ``0..k``, its noised inputs with the generated context, and the layout.

    ``batch``: a training batch (``video`` ``(B, C, 1 + F, h, w)``, ``struct`` ``(B, 1 + S, C_s)``,
    ``audio`` ``(B, 1 + A, C_a)``; sink first) of ``num_chunks`` chunks. ``steps``: the rollout's
    denoising steps per chunk (``None``: the config's ``forcing.inference_steps``). The rollout draws its
    noise from ``generator``, so a resumed run repeats it.
    """
    if num_chunks < 2:
        raise ValueError(f"rollout training needs >= 2 chunks (a context, a target), got {num_chunks}")
    rates = TokenRates.from_config(config.rates)
    target = int(torch.randint(1, num_chunks, (1,), generator=generator))
    end = rates.span(target)
    cut = {
        "video": batch["video"][:, :, : 1 + end.latent[1]],
        "struct": batch["struct"][:, : 1 + end.struct[1]],
        "audio": batch["audio"][:, : 1 + end.audio[1]],
    }
    cut.update({k: v for k, v in batch.items() if k not in cut})  # per-clip extras (the mouth region)
    layout = BlockLayout.build(rates, 0, target + 1, sink=True)
    noised = noise_batch(
        to_model_space(cut["video"], config), cut["struct"], layout, config.forcing, generator=generator
    )

    context_v, context_s = _rollout_context(model, cut, rates, target, generator, steps)
    # the sampler yields codec latents; the context goes in the tower's space
    context_v = codec_to_generated(context_v, cut["video"][:, :, :1], config)
    forcing = config.forcing
    frames, structs = 1 + end.latent[0], 1 + end.struct[0]  # the sink and chunks 0..k-1
    video, struct = noised.video.clone(), noised.struct.clone()
    video_sigma, struct_sigma = noised.video_sigma.clone(), noised.struct_sigma.clone()
    video_weight, struct_weight = noised.video_weight.clone(), noised.struct_weight.clone()
    ctx_v, ctx_s, sigma_v, sigma_s = context_sample(context_v, context_s, forcing, generator)
    video[:, :, 1:frames], struct[:, 1:structs] = ctx_v.to(video.dtype), ctx_s.to(struct.dtype)
    video_sigma[:, 1:frames], struct_sigma[:, 1:structs] = sigma_v, sigma_s
    video_weight[:, :frames] = 0.0  # the context is not a target
    # nor is the structure at all: its rollout is a legitimately different head motion (normalised
    # MSE to the truth ~1.3, as far as two clips' motions), and the truth's continuation from another
    # past would teach the tower to jump at every chunk (its loss on chunk k rises 6-10x)
    struct_weight.zero_()
    rolled = NoisedBatch(
        video=video,
        video_sigma=video_sigma,
        video_target=noised.video_target,
        video_weight=video_weight,
        struct=struct,
        struct_sigma=struct_sigma,
        struct_target=noised.struct_target,
        struct_weight=struct_weight,
    )
    return cut, rolled, layout


def _rollout_context(
    model: DualForceModel,
    batch: dict[str, torch.Tensor],
    rates: TokenRates,
    chunks: int,
    generator: torch.Generator,
    steps: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean generated chunks ``0..chunks-1`` of every clip: ``(B, C, F_k, h, w)`` and ``(B, S_k, C_s)``."""
    audio_rows = rates.span(chunks - 1).audio[1]
    was_training = model.training
    model.eval()
    try:
        videos, structs = [], []
        for row in range(batch["video"].shape[0]):
            reference = batch["video"][row : row + 1, :, :1]
            audio = batch["audio"][row, 1 : 1 + audio_rows]
            made = list(stream_latents(model, reference, audio, steps=steps, generator=generator))
            videos.append(torch.cat([c.video for c in made], dim=2))
            structs.append(torch.cat([c.struct for c in made], dim=1))
    finally:
        model.train(was_training)
    return torch.cat(videos), torch.cat(structs)
