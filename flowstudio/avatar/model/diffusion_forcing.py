"""Multimodal diffusion forcing: an independent noise level per frame and per modality.

Training (Chen et al. 2024, *Diffusion Forcing*, applied to two modalities): for a clip with ``F``
latent video frames and ``S = 4 F`` structure frames, draw::

    sigma_video[b, f]  ~ U(video_range)    per latent frame   (default U(0, 1))
    sigma_struct[b, s] ~ U(struct_range)   per structure frame (default U(0, 0.7): asymmetric)

then noise each frame at its own level with the flow-matching convention of
:mod:`flowstudio.core.flow`, ``x_sigma = (1 - sigma) x0 + sigma noise``, and regress the velocity
``v = noise - x0``. The sink (reference) frame keeps sigma 0 and is excluded from the loss. The
asymmetric default keeps the structure cleaner than the video, so the model learns to read motion
from a partially denoised structure (audio -> 3D -> video).

With ``clean_struct_prob`` p > 0, a fraction p of the items get their structure clean (sigma 0 on
every frame, no structure loss): the video is trained on the finished structure the
``structure_first`` sampler gives it, where the structure tells it exactly where the head and the
mouth are (the toy layout has no eyelids). (At the levels ``U(struct_range)`` draws, mostly 0.4-0.7
with ``train_shift`` 3, a small video tower learns to ignore the structure: the context frames and the
audio say nearly as much.)

Inference (:func:`chunk_schedule`): every chunk is denoised on the shifted flow grid
``flow_sigmas(steps, shift)``. The structure runs on the same grid scaled into its trained range,
``sigma_struct_i = struct_max * sigma_video_i``, and starts from ``struct_max * noise`` (the
zero-mean prior's sample at that level), so it never sees a level it was not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flowstudio.avatar.model.config import ForcingConfig
from flowstudio.avatar.model.rates import BlockLayout
from flowstudio.core.flow import add_noise, flow_sigmas, shift_sigmas, velocity_from_x0_noise


@dataclass
class NoisedBatch:
    """Noised inputs and regression targets of one training batch.

    Shapes: ``video`` / ``video_target`` ``(B, C, F, H, W)``, ``video_sigma`` ``(B, F)``, ``struct`` /
    ``struct_target`` ``(B, S, C_s)``, ``struct_sigma`` ``(B, S)``; ``*_weight``: 0 on sink frames, else 1.
    """

    video: torch.Tensor
    video_sigma: torch.Tensor
    video_target: torch.Tensor
    video_weight: torch.Tensor
    struct: torch.Tensor
    struct_sigma: torch.Tensor
    struct_target: torch.Tensor
    struct_weight: torch.Tensor


def sample_sigmas(
    shape: tuple[int, int],
    value_range: tuple[float, float],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``(B, N)`` sigmas drawn independently from ``U(low, high)``."""
    low, high = value_range
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"sigma range must satisfy 0 <= low <= high <= 1, got {value_range}")
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def noise_batch(
    video: torch.Tensor,
    struct: torch.Tensor,
    layout: BlockLayout,
    config: ForcingConfig,
    *,
    generator: torch.Generator | None = None,
) -> NoisedBatch:
    """Noise clean ``video`` ``(B, C, F, H, W)`` and ``struct`` ``(B, S, C_s)`` frame by frame.

    Frames of the sink block (``layout`` id 0) stay clean with sigma 0 and weight 0.
    """
    batch, frames, structs = video.shape[0], video.shape[2], struct.shape[1]
    device = video.device
    (v_lo, v_hi), (s_lo, s_hi) = config.video_range, config.struct_range
    for low, high in (config.video_range, config.struct_range):
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"sigma range must satisfy 0 <= low <= high <= 1, got {(low, high)}")
    if config.per_frame_noise:
        u_v = torch.rand((batch, frames), generator=generator)
        u_s = torch.rand((batch, structs), generator=generator)
    else:  # ablation: one level per clip, shared by every frame of both modalities
        u = torch.rand((batch, 1), generator=generator)
        u_v, u_s = u.expand(batch, frames), u.expand(batch, structs)
    if config.train_shift != 1.0:
        u_v, u_s = shift_sigmas(u_v, config.train_shift), shift_sigmas(u_s, config.train_shift)
    sigma_v = (v_lo + (v_hi - v_lo) * u_v).to(device)
    sigma_s = (s_lo + (s_hi - s_lo) * u_s).to(device)
    sink_v = (layout.video_ids == 0).to(device)
    sink_s = (layout.struct_ids == 0).to(device)
    sigma_v = torch.where(sink_v[None], 0.0, sigma_v)
    sigma_s = torch.where(sink_s[None], 0.0, sigma_s)
    noise_v = torch.randn(video.shape, generator=generator).to(device, video.dtype)
    noise_s = torch.randn(struct.shape, generator=generator).to(device, struct.dtype)
    struct_weight = (~sink_s).float()[None].expand(batch, -1)
    if config.clean_struct_prob > 0:  # drawn last, so that 0 leaves the draws above unchanged
        clean = (torch.rand((batch, 1), generator=generator) < config.clean_struct_prob).to(device)
        sigma_s = torch.where(clean, 0.0, sigma_s)
        struct_weight = struct_weight * (~clean).float()  # nothing to denoise: no structure loss
    noisy_v = add_noise(video, noise_v, sigma_v[:, None, :, None, None].to(video.dtype))
    noisy_s = add_noise(struct, noise_s, sigma_s[:, :, None].to(struct.dtype))
    return NoisedBatch(
        video=noisy_v,
        video_sigma=sigma_v,
        video_target=velocity_from_x0_noise(video, noise_v),
        video_weight=(~sink_v).float()[None].expand(batch, -1),
        struct=noisy_s,
        struct_sigma=sigma_s,
        struct_target=velocity_from_x0_noise(struct, noise_s),
        struct_weight=struct_weight,
    )


def chunk_schedule(config: ForcingConfig, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-chunk inference grids ``(video_sigmas, struct_sigmas)``, each ``(steps + 1,)`` descending to 0."""
    video = flow_sigmas(steps or config.inference_steps, config.shift).float()
    return video, video * config.struct_range[1]
