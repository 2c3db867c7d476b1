"""A lip-sync loss through the toy world's analytic mouth reader, in torch (``train.lip_sync_scorer:
mouth_reader``).

The TalkingShapes mouth interior has a colour no other part of the world comes close to
(:func:`flowstudio.worlds.faces.mouth_interior_mask`). :func:`mouth_interior_mask_torch` is the same
soft mask (same thresholds, the same 0-255 scale) on torch tensors, and :func:`decode_toy_latents` the
toy codec's decoding (:class:`~flowstudio.avatar.model.codec.ToyCodec`: each latent pixel holds the
area mean of its ``stride x stride`` pixels for 4 frames, decoding repeats it) without the uint8
rounding. The codec is parameter-free and fixed, so a gradient through it reaches only what made the
latents: the model.

Because decoding is a nearest upsampling, the mask of a decoded frame is the mask of its latent pixels
repeated ``stride x stride`` times: the readers below work on latent pixels and give the values of the
numpy readers on ``ToyCodec.decode`` (up to its rounding to uint8). :func:`read_mouth_opening_torch`
is :func:`~flowstudio.worlds.faces.read_mouth_opening` (the eval's lip-sync reader);
:func:`mouth_area_torch` is the mask's area, the quantity the loss compares.

:class:`MouthReaderSync` is a :data:`~flowstudio.avatar.training.losses.LipSyncScorer` for
``lip_sync_loss``: built per batch with the true clip's latents (the dataset knows the truth), the
frame weights and the noise levels, it reads the per-frame mouth-interior area of the model's predicted
clean video ``x0 = x_sigma - sigma v`` and of the true clip at the same frames and returns per sample
the mean squared difference (area in percent of the frame) over the frames whose loss weight is 1 and
whose noise level is at most ``max_sigma``. At high noise ``x0`` is the model's blurred guess of the
mean clip, in which a mouth can only show as a faint average; asking it for the exact opening there
mostly adds noise to the gradient, so those frames are left to the flow-matching loss.

Gradient: the mask is a product of three clipped ramps, flat (zero gradient) outside them, so a
predicted frame whose mouth is fully closed would give no gradient towards opening it. The forward
value is the exact mask; the backward pass uses smooth ramps (softplus differences, ``smooth`` in ramp
units) whose gradient is non-zero outside the ramp (a straight-through surrogate). Skin, hair and
background stay far outside the ramps, so the surrogate gradient there is tiny; it matters on the
lips and the blurred mouth, where interior and lip colours mix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _hard_ramp(z: torch.Tensor) -> torch.Tensor:
    return z.clamp(0.0, 1.0)


def _soft_ramp(z: torch.Tensor, smooth: float) -> torch.Tensor:
    return (F.softplus(smooth * z) - F.softplus(smooth * (z - 1.0))) / smooth


def mouth_interior_mask_torch(rgb: torch.Tensor, smooth: float | None = 2.0) -> torch.Tensor:
    """Soft mouth-interior mask of ``rgb`` ``(..., 3, H, W)`` in the 0-255 scale -> ``(..., H, W)``.

    The forward value equals :func:`flowstudio.worlds.faces.mouth_interior_mask`; with ``smooth`` the
    gradient is that of the smooth ramps (see the module docstring), ``None`` the exact mask's."""
    r, g, b = rgb.unbind(dim=-3)
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    z = ((r - g - 45.0) / 30.0, (75.0 - g) / 20.0, (100.0 - luma) / 20.0)
    hard = _hard_ramp(z[0]) * _hard_ramp(z[1]) * _hard_ramp(z[2])
    if smooth is None:
        return hard
    soft = _soft_ramp(z[0], smooth) * _soft_ramp(z[1], smooth) * _soft_ramp(z[2], smooth)
    return hard + (soft - soft.detach())


def decode_toy_latents(latents: torch.Tensor, frames_per_latent: int = 4) -> torch.Tensor:
    """Toy codec latents ``(B, 3 * frames_per_latent, F, h, w)`` in ``[-1, 1]`` -> RGB
    ``(B, frames_per_latent * F, 3, h, w)`` in 0-255 at latent resolution (``ToyCodec.decode``
    without the nearest upsampling and the rounding; clamped like it)."""
    b, c, f, h, w = latents.shape
    x = latents.float().permute(0, 2, 1, 3, 4).reshape(b, f * frames_per_latent, c // frames_per_latent, h, w)
    return (x.clamp(-1.0, 1.0) + 1.0) * 127.5


def mouth_area_torch(latents: torch.Tensor, smooth: float | None = 2.0) -> torch.Tensor:
    """Mouth-interior area per frame, percent of the frame, ``(B, 4F)``, of toy codec latents."""
    return mouth_interior_mask_torch(decode_toy_latents(latents), smooth).mean(dim=(-2, -1)) * 100.0


def read_mouth_opening_torch(latents: torch.Tensor, stride: int, smooth: float | None = 2.0) -> torch.Tensor:
    """:func:`flowstudio.worlds.faces.read_mouth_opening` of ``ToyCodec(stride).decode(latents)``,
    ``(B, 4F)``: the mean interior height over the columns holding at least one pixel of it, as a
    fraction of ``min(H, W)``. A decoded column's interior height is ``stride`` x its latent column's."""
    mask = mouth_interior_mask_torch(decode_toy_latents(latents), smooth)  # (B, T, h, w)
    column = mask.sum(dim=-2) * stride  # (B, T, w): interior height per decoded column, pixels
    full = (column >= 1.0).float()
    height = (column * full).sum(-1) / full.sum(-1).clamp_min(1.0)
    return height / (stride * min(mask.shape[-2:]))


class MouthReaderSync:
    """``scorer(video_x0, audio) -> (B,)`` (a :data:`~flowstudio.avatar.training.losses.LipSyncScorer`):
    the mean squared difference of the per-frame mouth-interior area (percent of the frame) between the
    predicted clean video and the truth ``true_video`` ``(B, C, F, h, w)`` (toy codec latents, the
    same layout), over the latent frames with ``frame_weight`` 1 and ``sigma <= max_sigma``; 0 for a
    sample with no such frame. ``audio`` is not read: the true clip carries what the audio says.

    ``per_pixel=True`` (scorer ``mouth_mask``) compares the masks pixel by pixel instead of their areas:
    per frame the summed squared mask difference in percent of the frame. The area alone is not
    localised: a frame whose predicted area is too small pushes every pixel the surrogate gradient
    reaches towards the interior colour, wherever it is; the per-pixel form asks for the interior
    where the truth shows it and nowhere else."""

    def __init__(
        self,
        true_video: torch.Tensor,
        frame_weight: torch.Tensor,
        sigma: torch.Tensor,
        max_sigma: float = 0.75,
        smooth: float | None = 2.0,
        per_pixel: bool = False,
    ) -> None:
        self.per_pixel = per_pixel
        with torch.no_grad():
            truth = true_video.detach()
            self.target = (
                mouth_interior_mask_torch(decode_toy_latents(truth), None)  # (B, 4F, h, w)
                if per_pixel
                else mouth_area_torch(truth, None)  # (B, 4F)
            )
        keep = (frame_weight > 0.5) & (sigma <= max_sigma)  # (B, F)
        self.frames_per_latent = self.target.shape[1] // keep.shape[1]
        self.keep = keep.float().repeat_interleave(self.frames_per_latent, dim=1)  # (B, 4F)
        self.smooth = smooth

    def __call__(self, video_x0: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        if self.per_pixel:
            mask = mouth_interior_mask_torch(decode_toy_latents(video_x0), self.smooth)
            err = (mask - self.target.to(mask.device)).pow(2).mean(dim=(-2, -1)) * 100.0
        else:
            area = mouth_area_torch(video_x0, self.smooth)
            err = (area - self.target.to(area.device)).pow(2)
        keep = self.keep.to(err.device)
        return (err * keep).sum(1) / keep.sum(1).clamp_min(1.0)


SCORERS = ("mouth_reader", "mouth_mask")
