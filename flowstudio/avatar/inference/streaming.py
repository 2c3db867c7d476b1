"""Streaming inference: reference image + audio -> frames, chunk by chunk, as a Python generator.

No 3D input: the structure is generated jointly with the video. Per chunk (Self-Forcing's loop,
own code)::

    x_video ~ N(0, I), x_struct ~ struct_max * N(0, I)
    for i in steps:      v = model(chunk at sigma_i, cache)          # read-only cache
                         x <- x + (sigma_{i+1} - sigma_i) v          # Euler on the flow ODE
    model(clean chunk at sigma 0, cache, commit=True)                 # clean pass writes the cache
    yield the chunk                                                   # the window rolls, the sink stays

Before the first chunk, the sink (clean reference latent, structure sink, null audio token) is
committed once. When a chunk leaves the window the cache re-rotates the keys it keeps to
window-relative positions (:mod:`flowstudio.avatar.model.kv_cache`), so a stream has no length limit
and its memory and per-chunk time stay flat. Profiling goes through ``callback(info)``, never through
flags in the loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from flowstudio.avatar.model.codec import ToyCodec
from flowstudio.avatar.model.diffusion_forcing import chunk_schedule
from flowstudio.avatar.model.dualforce import DualForceInputs, DualForceModel
from flowstudio.avatar.model.rates import BlockLayout
from flowstudio.errors import InputError

logger = logging.getLogger(__name__)


@dataclass
class Chunk:
    """One generated chunk: ``video`` ``(1, C, F_c, h, w)`` latents and ``struct`` ``(1, S_c, C_s)``."""

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
    """Chunk inputs with one sigma per modality for all its frames."""
    return DualForceInputs(
        video=video,
        video_sigma=torch.full((1, video.shape[2]), float(video_sigma), device=video.device),
        struct=struct,
        struct_sigma=torch.full((1, struct.shape[1]), float(struct_sigma), device=video.device),
        audio=audio,
        layout=layout,
        reference=reference,
    )


def _sink_inputs(model: DualForceModel, reference: torch.Tensor, audio_dim: int) -> DualForceInputs:
    """Block 0: the clean reference latent, the structure sink token and the null audio token."""
    layout = BlockLayout.build(model.rates, 0, 0, sink=True)
    struct = reference.new_zeros(1, 1, model.config.struct.in_channels)
    return _inputs(layout, reference, 0.0, struct, 0.0, reference.new_zeros(1, 1, audio_dim), reference)


@torch.no_grad()
def stream_latents(
    model: DualForceModel,
    reference: torch.Tensor,
    audio: torch.Tensor,
    *,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of latents as they are generated.

    Args:
        reference: clean reference latent ``(1, C, 1, h, w)``.
        audio: 50 Hz features ``(A, C_a)``; ``A // (8 * frames_per_chunk)`` chunks are generated.
        steps: denoising steps per chunk (default ``forcing.inference_steps``).
    """
    cfg, rates = model.config, model.rates
    chunks = rates.num_chunks(audio.shape[0])
    if chunks < 1:
        need = rates.chunk_seconds()
        raise InputError(
            f"audio too short: {audio.shape[0]} feature frames ({audio.shape[0] / 50:.3f} s); "
            f"one chunk needs {need:.2f} s"
        )
    dev, dtype = reference.device, reference.dtype
    sig_v, sig_s = chunk_schedule(cfg.forcing, steps)
    audio = audio.to(dev, dtype)[None]
    cache = model.new_cache()
    model(_sink_inputs(model, reference, audio.shape[2]), cache=cache, commit=True)  # 1. commit the sink
    for c in range(chunks):
        start = time.perf_counter()
        layout, span = BlockLayout.build(rates, c, c + 1, sink=False), rates.span(c)
        audio_c = audio[:, span.audio[0] : span.audio[1]]
        shape_v = (1, reference.shape[1], rates.frames_per_chunk, *reference.shape[3:])
        x_v = torch.randn(shape_v, generator=generator, device=dev, dtype=dtype)  # 2. start from noise
        shape_s = (1, len(layout.struct_ids), cfg.struct.in_channels)
        x_s = sig_s[0] * torch.randn(shape_s, generator=generator, device=dev, dtype=dtype)
        for i in range(len(sig_v) - 1):  # 3. few-step Euler against the read-only cache
            v_v, v_s = model(_inputs(layout, x_v, sig_v[i], x_s, sig_s[i], audio_c, reference), cache=cache)
            x_v = x_v + (sig_v[i + 1] - sig_v[i]) * v_v
            x_s = x_s + (sig_s[i + 1] - sig_s[i]) * v_s
        model(_inputs(layout, x_v, 0.0, x_s, 0.0, audio_c, reference), cache=cache, commit=True)  # 4. commit
        if callback is not None:
            took = time.perf_counter() - start
            info = {"chunk": c, "seconds": took, "cache_tokens": cache.video.num_tokens}
            callback({**info, "cache_bytes": cache.nbytes(), "position_shift": cache.video.shift})
        yield Chunk(c, x_v, x_s, float(span.seconds[1]))


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
) -> Iterator[np.ndarray]:
    """Yield uint8 ``(H, W, 3)`` frames at 25 fps as soon as each chunk is decoded."""
    check_image(image, model.config.image_size)
    codec = codec or ToyCodec.for_config(model.config)
    param = next(model.parameters())
    reference = codec.encode_image(image).to(param.device, param.dtype)
    generator = torch.Generator(device=param.device).manual_seed(seed)
    for chunk in stream_latents(
        model, reference, features, steps=steps, generator=generator, callback=callback
    ):
        yield from codec.decode(chunk.video)
