"""Video latents as differences from the reference (``video_input.residual_to_reference``).

A talking head is its reference image plus small changes: the mouth, the eyes, a little head
motion. With this switch the video tower denoises ``latent - reference latent`` for every generated
frame instead of the latent itself; the reference (sink) frame stays the reference latent, the
condition it is. What a few-step sampler gets wrong then falls back to the reference instead of to
the average face: regression to the mean is regression to the identity, so the eyes and the face's
colours cannot fade as the stream goes on.

The sampler adds the reference back before it yields a chunk, so callers always see codec latents;
training subtracts it (:func:`to_model_space`) before drawing the noise.
"""

from __future__ import annotations

import torch

from flowstudio.avatar.model.config import DualForceConfig


def generated_to_codec(
    frames: torch.Tensor, reference: torch.Tensor, config: DualForceConfig
) -> torch.Tensor:
    """Generated frames ``(B, C, F, h, w)`` in the tower's space (no sink) -> codec latents, given
    the reference latent ``(B or 1, C, 1, h, w)``."""
    return frames + reference if config.video_input.residual_to_reference else frames


def codec_to_generated(
    frames: torch.Tensor, reference: torch.Tensor, config: DualForceConfig
) -> torch.Tensor:
    """Codec latents of generated frames -> the tower's space (inverse of :func:`generated_to_codec`)."""
    return frames - reference if config.video_input.residual_to_reference else frames


def to_model_space(video: torch.Tensor, config: DualForceConfig) -> torch.Tensor:
    """Codec latents ``(B, C, 1 + F, h, w)`` whose frame 0 is the reference -> the tower's space."""
    if not config.video_input.residual_to_reference:
        return video
    reference = video[:, :, :1]
    return torch.cat([reference, codec_to_generated(video[:, :, 1:], reference, config)], dim=2)


def from_model_space(video: torch.Tensor, config: DualForceConfig) -> torch.Tensor:
    """Inverse of :func:`to_model_space`."""
    if not config.video_input.residual_to_reference:
        return video
    reference = video[:, :, :1]
    return torch.cat([reference, generated_to_codec(video[:, :, 1:], reference, config)], dim=2)
