"""Wan2.2 TI2V first-frame conditioning, as diffusers' ``WanImageToVideoPipeline`` does it
with ``expand_timesteps=True``.

Latent frame 0 is the VAE encoding of the conditioning image. Its tokens are fed to the model
with timestep 0 (they are clean) and are never updated by the solver; every other token gets the
current timestep. ``mask`` below is 0 on pinned (first-frame) positions and 1 elsewhere, shape
``(1, 1, T, H, W)`` in latent space.
"""

from __future__ import annotations

import torch


def first_frame_mask(latent_shape: tuple[int, ...], *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Mask ``(1, 1, T, H, W)``: 0 on latent frame 0, 1 on all later frames."""
    _, _, frames, height, width = latent_shape
    mask = torch.ones(1, 1, frames, height, width, device=device, dtype=dtype)
    mask[:, :, 0] = 0
    return mask


def pin_first_frame(latents: torch.Tensor, condition: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Put the clean conditioning latent back on masked-out positions, bit-exactly.

    ``condition`` has latent frame 0 (``(B, C, 1, H, W)``) or the full latent shape.
    ``torch.where`` (not ``(1 - m) * c + m * x``) keeps the pinned values bit-identical.
    """
    if condition.shape[2] == 1 and latents.shape[2] > 1:
        pad = latents.new_zeros(latents.shape[0], latents.shape[1], latents.shape[2] - 1, *latents.shape[3:])
        condition = torch.cat(
            [condition.expand(latents.shape[0], -1, -1, -1, -1).to(latents.dtype), pad], dim=2
        )
    return torch.where(mask.bool(), latents, condition.to(latents.dtype))


def per_token_timesteps(
    mask: torch.Tensor, timestep: float | torch.Tensor, patch_size: tuple[int, int, int], batch_size: int
) -> torch.Tensor:
    """Per-token timesteps ``(B, seq_len)``: ``timestep`` where the mask is 1, 0 on pinned tokens.

    Tokens are patches of ``patch_size = (p_t, p_h, p_w)``; a token is pinned when its patch lies in
    latent frame 0 (the mask is constant over a patch, so sampling its first element suffices,
    exactly as diffusers does with ``mask[0][0][:, ::2, ::2]``).
    """
    p_t, p_h, p_w = patch_size
    token_mask = mask[0, 0, ::p_t, ::p_h, ::p_w].flatten()
    return (token_mask * timestep).unsqueeze(0).expand(batch_size, -1)
