"""Latent codecs: frames <-> the video tower's latents.

Real checkpoints use the Wan VAE of their diffusers folder (not wired here yet, see the guide).
The toy world uses :class:`ToyCodec`, a fixed, parameter-free stand-in with the Wan VAE's temporal
rate (4 frames per latent frame) and a spatial stride of 8 (the Wan VAE's) or 4: a latent frame
holds its 4 frames' RGB, area-averaged over ``stride x stride`` pixels, as ``4 x 3 = 12`` channels in
``[-1, 1]``; decoding upsamples them back (nearest). The toy DualForce uses stride 4: at 64 x 64 a
stride of 8 averages the mouth away (``benchmarks/faces_codec.py`` measures it).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from flowstudio.errors import InputError


class ToyCodec:
    """Parameter-free codec: ``(4F, H, W, 3)`` uint8 <-> ``(1, 12, F, H/stride, W/stride)`` latents."""

    frames_per_latent = 4
    channels = 12

    def __init__(self, stride: int = 8) -> None:
        if stride not in (1, 2, 4, 8, 16):
            raise InputError(f"toy codec stride must be 1, 2, 4, 8 or 16, got {stride!r}")
        self.stride = stride

    @classmethod
    def for_config(cls, config) -> ToyCodec:
        """The codec of a DualForce config (its ``vae_spatial_stride``)."""
        return cls(stride=config.vae_spatial_stride)

    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        """Reference image uint8 ``(H, W, 3)`` -> latent ``(1, 12, 1, H/s, W/s)`` (image repeated 4x)."""
        return self.encode_frames(np.repeat(image[None], self.frames_per_latent, axis=0))

    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(4F, H, W, 3)`` -> ``(1, 12, F, H/stride, W/stride)``."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] % self.frames_per_latent:
            raise InputError(f"frames must be (4F, H, W, 3) uint8, got shape {frames.shape}")
        height, width = frames.shape[1:3]
        if height % self.stride or width % self.stride:
            raise InputError(f"frame size {height}x{width} must be a multiple of {self.stride}")
        x = torch.from_numpy(np.ascontiguousarray(frames)).float().permute(0, 3, 1, 2) / 127.5 - 1.0
        x = F.avg_pool2d(x, self.stride)  # (4F, 3, h, w)
        latent_frames = x.shape[0] // self.frames_per_latent
        x = x.reshape(latent_frames, self.channels, *x.shape[2:])
        return x.permute(1, 0, 2, 3).unsqueeze(0)

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """``(1, 12, F, h, w)`` -> uint8 ``(4F, stride h, stride w, 3)``."""
        x = latents[0].float().permute(1, 0, 2, 3)  # (F, 12, h, w)
        x = x.reshape(-1, 3, *x.shape[2:])
        x = F.interpolate(x, scale_factor=self.stride, mode="nearest")
        x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return x.permute(0, 2, 3, 1).numpy()
