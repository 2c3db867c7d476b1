"""Streaming inference: reference image + audio -> frames, chunk by chunk, as a Python generator.

No 3D input: the structure is generated jointly with the video. Per chunk (Self-Forcing's loop,
own code)::

    x_video ~ N(0, I), x_struct ~ struct_max * N(0, I)
    for i in steps:      v = model(chunk at sigma_i, cache)          # read-only cache
                         x <- x + (sigma_{i+1} - sigma_i) v          # Euler on the flow ODE
    model(chunk re-noised to context_sigma, cache, commit=True)       # commit pass writes the cache
    yield the chunk                                                   # the window rolls, the sink stays

``forcing.context_sigma`` is 0 by default (the clean commit); above 0 the committed chunk carries
fresh noise at that level (:class:`~flowstudio.avatar.model.config.ForcingConfig` says why). The
yielded chunk is always the clean sample.

Before the first chunk, the sink (clean reference latent, structure sink, null audio token) is
committed once. When a chunk leaves the window the cache re-rotates the keys it keeps to
window-relative positions (:mod:`flowstudio.avatar.model.kv_cache`), so a stream has no length limit
and its memory and per-chunk time stay flat. Profiling goes through ``callback(info)``, never through
flags in the loop.

**Audio guidance** (``audio_guidance`` s; default the config's ``forcing.audio_guidance``, 1 = off):
classifier-free guidance on the audio, ``v = v(silence) + s (v(audio) - v(silence))`` =
``v(audio) + (s - 1) (v(audio) - v(silence))`` for both the video and the structure velocity, with silence as
:func:`~flowstudio.avatar.model.audio.silent_features`. The two branches run as the two rows of one
batch through every call, the sink and the clean commit pass included, so the cache holds one row per
branch: the silent branch's context keys are those of *the same chosen (guided) chunk* seen with
silence, i.e. the silent branch is exactly the model's prediction for a silent stream with this video
history (a full-sequence call with silent audio throughout, as audio dropout trains it; tested against
that). Cost: every forward carries two rows (about twice the compute). ``s = 1`` takes the one-row path
and is bit-identical to the sampler without guidance.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from flowstudio.avatar.model.audio import silent_features
from flowstudio.avatar.model.codec import ToyCodec
from flowstudio.avatar.model.config import ForcingConfig
from flowstudio.avatar.model.diffusion_forcing import chunk_schedule
from flowstudio.avatar.model.dualforce import DualForceInputs, DualForceModel
from flowstudio.avatar.model.rates import BlockLayout
from flowstudio.avatar.model.residual import generated_to_codec
from flowstudio.checks import check_number
from flowstudio.core.flow import add_noise, classifier_free_guidance
from flowstudio.errors import InputError

logger = logging.getLogger(__name__)


@dataclass
class Chunk:
    """One generated chunk: ``video`` ``(1, C, F_c, h, w)`` codec latents (the reference added back when
    the tower works on differences from it, ``video_input.residual_to_reference``) and ``struct``
    ``(1, S_c, C_s)``."""

    index: int
    video: torch.Tensor
    struct: torch.Tensor
    seconds: float


def _inputs(
    layout: BlockLayout,
    video: torch.Tensor,
    video_sigma: float,
    struct: torch.Tensor,
    struct_sigma: float,
    audio: torch.Tensor,
    reference: torch.Tensor,
) -> DualForceInputs:
    """Chunk inputs with one sigma per modality for all its frames (and all batch rows)."""
    rows = video.shape[0]
    return DualForceInputs(
        video=video,
        video_sigma=torch.full((rows, video.shape[2]), float(video_sigma), device=video.device),
        struct=struct,
        struct_sigma=torch.full((rows, struct.shape[1]), float(struct_sigma), device=video.device),
        audio=audio,
        layout=layout,
        reference=reference,
    )


def _sink_inputs(model: DualForceModel, reference: torch.Tensor, audio_dim: int) -> DualForceInputs:
    """Block 0: the clean reference latent, the structure sink token and the null audio token
    (one row per row of ``reference``)."""
    layout = BlockLayout.build(model.rates, 0, 0, sink=True)
    rows = reference.shape[0]
    struct = reference.new_zeros(rows, 1, model.config.struct.in_channels)
    return _inputs(layout, reference, 0.0, struct, 0.0, reference.new_zeros(rows, 1, audio_dim), reference)


def _rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` (one row) repeated as ``rows`` batch rows; unchanged for one row (the unguided path)."""
    return x if rows == 1 else x.expand(rows, *x.shape[1:])


def _guide(velocity: torch.Tensor, scale: float) -> torch.Tensor:
    """Row 0 (audio) guided away from row 1 (silence) by ``scale``; one row is returned as it is."""
    if velocity.shape[0] == 1:
        return velocity
    return classifier_free_guidance(velocity[:1], velocity[1:], scale)


def sampling(
    forcing: ForcingConfig, audio_guidance: float | None = None, context_sigma: float | None = None
) -> ForcingConfig:
    """``forcing`` with a call's sampler overrides (``None`` keeps the config's value), checked: what
    :func:`stream_latents` samples with and what reports record."""
    if audio_guidance is not None:
        check_number("audio_guidance", audio_guidance, minimum=0.0, what="; 1 is off")
        forcing = dataclasses.replace(forcing, audio_guidance=float(audio_guidance))
    if context_sigma is not None:
        check_number("context_sigma", context_sigma, minimum=0.0, what="; 0 is the clean commit")
        if context_sigma >= 1.0:
            raise InputError(f"context_sigma must be below 1 (1 commits pure noise), got {context_sigma}")
        forcing = dataclasses.replace(forcing, context_sigma=float(context_sigma))
    return forcing


def context_sample(
    x_v: torch.Tensor, x_s: torch.Tensor, forcing: ForcingConfig, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """The chunk as committed: ``(video, struct, video_sigma, struct_sigma)``; the clean sample at
    sigma 0 unless ``forcing.context_sigma`` > 0 (then fresh noise at that level, the structure's
    scaled into its range as the sampler's grid is)."""
    sigma_v = float(forcing.context_sigma)
    if sigma_v == 0.0:
        return x_v, x_s, 0.0, 0.0
    sigma_s = sigma_v * forcing.struct_range[1]
    noise_v = torch.randn(x_v.shape, generator=generator, device=x_v.device, dtype=x_v.dtype)
    noise_s = torch.randn(x_s.shape, generator=generator, device=x_s.device, dtype=x_s.dtype)
    return add_noise(x_v, noise_v, sigma_v), add_noise(x_s, noise_s, sigma_s), sigma_v, sigma_s


@torch.no_grad()
def stream_latents(
    model: DualForceModel,
    reference: torch.Tensor,
    audio: torch.Tensor,
    *,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
    audio_guidance: float | None = None,
    context_sigma: float | None = None,
    structure: torch.Tensor | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of latents as they are generated.

    Args:
        reference: clean reference latent ``(1, C, 1, h, w)``.
        audio: 50 Hz features ``(A, C_a)``; ``A // (8 * frames_per_chunk)`` chunks are generated.
        steps: denoising steps per chunk (default ``forcing.inference_steps``).
        audio_guidance: classifier-free guidance scale on the audio against silence (module
            docstring); 1 is off, > 1 pushes the chunk further from what silence would give, at twice
            the compute. ``None``: the config's ``forcing.audio_guidance`` (1 unless the checkpoint says).
        context_sigma: the level the generated chunks are committed at (``None``: the config's
            ``forcing.context_sigma``; 0 is the clean commit).
        structure: a given structure latent ``(S, C_s)`` on the tower's normalised scale, one row per
            structure frame from the stream's start (at least as many as the chunks need). At every step
            the structure tower's sample is replaced by it, noised to the step's level with the chunk's
            own noise draw, and it is what the chunk commits and yields: the video is generated *driven*
            by that motion. A diagnosis (does the video follow the structure? see
            ``benchmarks/avatar_fvd_parts.py``) and the way to drive a head with a known motion.
    """
    cfg, rates = model.config, model.rates
    forcing = sampling(cfg.forcing, audio_guidance, context_sigma)
    audio_guidance = forcing.audio_guidance
    video_guidance = audio_guidance if forcing.video_guidance is None else forcing.video_guidance
    chunks = rates.num_chunks(audio.shape[0])
    if chunks < 1:
        need = rates.chunk_seconds()
        raise InputError(
            f"audio too short: {audio.shape[0]} feature frames ({audio.shape[0] / 50:.3f} s); "
            f"one chunk needs {need:.2f} s"
        )
    dev, dtype = reference.device, reference.dtype
    sig_v, sig_s = chunk_schedule(cfg.forcing, steps)
    if structure is not None:
        structure = _check_structure(structure, model, chunks).to(dev, dtype)
    audio = audio.to(dev, dtype)[None]
    rows = 1
    if audio_guidance != 1.0 or video_guidance != 1.0:  # row 0 hears the audio, row 1 silence; the
        # cache keeps a row per branch
        audio, rows = torch.cat([audio, silent_features(audio)]), 2
        reference = _rows(reference, rows)
    cache = model.new_cache()
    model(_sink_inputs(model, reference, audio.shape[2]), cache=cache, commit=True)  # 1. commit the sink
    for c in range(chunks):
        start = time.perf_counter()
        layout, span = BlockLayout.build(rates, c, c + 1, sink=False), rates.span(c)
        audio_c = audio[:, span.audio[0] : span.audio[1]]
        shape_v = (1, reference.shape[1], rates.frames_per_chunk, *reference.shape[3:])  # one sample
        x_v = torch.randn(shape_v, generator=generator, device=dev, dtype=dtype)  # 2. start from noise
        shape_s = (1, len(layout.struct_ids), cfg.struct.in_channels)
        x_s = sig_s[0] * torch.randn(shape_s, generator=generator, device=dev, dtype=dtype)
        if structure is not None:  # driven: the given motion at each step's level, this chunk's noise
            given, noise_s = structure[None, span.struct[0] : span.struct[1]], x_s / sig_s[0]
        if forcing.structure_first and structure is None:  # 3a. the structure alone, video at noise
            for i in range(len(sig_s) - 1):
                alone = _inputs(layout, _rows(x_v, rows), 1.0, _rows(x_s, rows), sig_s[i], audio_c, reference)
                x_s = x_s + (sig_s[i + 1] - sig_s[i]) * _guide(model(alone, cache=cache)[1], audio_guidance)
            given = x_s  # then held clean while the video is sampled
        for i in range(len(sig_v) - 1):  # 3. few-step Euler against the read-only cache
            level_s = float(sig_s[i])
            if structure is not None:
                x_s = add_noise(given, noise_s, level_s)
            elif forcing.structure_first:
                x_s, level_s = given, 0.0
            step = _inputs(layout, _rows(x_v, rows), sig_v[i], _rows(x_s, rows), level_s, audio_c, reference)
            v_v, v_s = model(step, cache=cache)
            x_v = x_v + (sig_v[i + 1] - sig_v[i]) * _guide(v_v, video_guidance)
            x_s = x_s + (sig_s[i + 1] - sig_s[i]) * _guide(v_s, audio_guidance)
        # 4. the commit pass writes the chosen sample in every branch (each with its own audio)
        if structure is not None or forcing.structure_first:  # the held structure, not the last update
            x_s = given
        ctx_v, ctx_s, c_v, c_s = context_sample(x_v, x_s, forcing, generator)
        commit = _inputs(layout, _rows(ctx_v, rows), c_v, _rows(ctx_s, rows), c_s, audio_c, reference)
        model(commit, cache=cache, commit=True)
        if callback is not None:
            took = time.perf_counter() - start
            info = {"chunk": c, "seconds": took, "cache_tokens": cache.video.num_tokens}
            callback({**info, "cache_bytes": cache.nbytes(), "position_shift": cache.video.shift})
        yield Chunk(c, generated_to_codec(x_v, reference[:1], cfg), x_s, float(span.seconds[1]))


def _check_structure(structure: torch.Tensor, model: DualForceModel, chunks: int) -> torch.Tensor:
    """A given structure must be ``(S, C_s)`` with a row for every structure frame of ``chunks``."""
    channels = model.config.struct.in_channels
    need = model.rates.span(chunks - 1).struct[1]
    if structure.ndim != 2 or structure.shape[1] != channels:
        raise InputError(
            f"given structure must be (frames, {channels}) for this model, got shape {tuple(structure.shape)}"
        )
    if structure.shape[0] < need:
        raise InputError(
            f"given structure has {structure.shape[0]} frames, the {chunks} chunks of this audio need "
            f"{need}; give a longer motion or a shorter audio"
        )
    return structure


def check_image(image: np.ndarray, size: tuple[int, int]) -> None:
    """The reference image must be uint8 ``(H, W, 3)`` at the model's ``image_size``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"reference image must be RGB (H, W, 3), got shape {image.shape}")
    if tuple(image.shape[:2]) != tuple(size):
        raise InputError(
            f"reference image is {image.shape[0]}x{image.shape[1]}, this model takes "
            f"{size[0]}x{size[1]} (height x width); resize or crop it first"
        )


def stream_frames(
    model: DualForceModel,
    image: np.ndarray,
    features: torch.Tensor,
    *,
    codec: ToyCodec | None = None,
    steps: int | None = None,
    seed: int = 0,
    callback: Callable[[dict[str, float]], None] | None = None,
    audio_guidance: float | None = None,
    context_sigma: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield uint8 ``(H, W, 3)`` frames at 25 fps as soon as each chunk is decoded
    (``audio_guidance``, ``context_sigma``: see :func:`stream_latents`)."""
    check_image(image, model.config.image_size)
    codec = codec or ToyCodec.for_config(model.config)
    param = next(model.parameters())
    reference = codec.encode_image(image).to(param.device, param.dtype)
    generator = torch.Generator(device=param.device).manual_seed(seed)
    for chunk in stream_latents(
        model,
        reference,
        features,
        steps=steps,
        generator=generator,
        callback=callback,
        audio_guidance=audio_guidance,
        context_sigma=context_sigma,
    ):
        yield from codec.decode(chunk.video)
