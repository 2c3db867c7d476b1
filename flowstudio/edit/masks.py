"""Edit masks: from a video, an image, a box, or automatically from cross-attention.

A pixel mask is float ``(T, H, W)`` in ``[0, 1]``, 1 where the edit may change the video (the
*edit region*), 0 where the source must be kept. :func:`latent_mask` brings it to latent space
``(1, 1, T', H', W')``: latent frame 0 covers pixel frame 0 and latent frame ``j >= 1`` covers pixel
frames ``4j-3 .. 4j`` (Wan's causal 4x time compression); a latent cell is in the region when any
pixel it covers is (max-pooling, so the region is never cut). Feathering dilates the region by
``feather`` latent cells and box-blurs it by the same radius: values inside the original region stay
exactly 1, and beyond ``2 * feather`` cells they are exactly 0, so "keep" stays exact there.

:func:`auto_mask` finds the region where the source and target prompts' cross-attention differ:
one batched model call on the noised source with both prompts, where a processor on every block's
cross-attention attends the *same* queries to both prompts' keys/values and accumulates the norm of
the difference per token.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from flowstudio.denoiser import Conditioning
from flowstudio.edit.paired import EditDenoiser, Request
from flowstudio.errors import InputError
from flowstudio.wan_attention import attend, project_qkv

logger = logging.getLogger(__name__)


def mask_from_box(box: tuple[int, int, int, int], frames: int, height: int, width: int) -> np.ndarray:
    """``(T, H, W)`` mask, 1 inside the pixel box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) on every frame."""
    if len(box) != 4:
        raise InputError(f"box must be (x0, y0, x1, y1) in pixels, got {box!r}")
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise InputError(
            f"box {box!r} must satisfy 0 <= x0 < x1 <= width={width} and 0 <= y0 < y1 <= height={height}"
        )
    mask = np.zeros((frames, height, width), np.float32)
    mask[:, y0:y1, x0:x1] = 1.0
    return mask


def to_pixel_mask(data: np.ndarray, name: str = "mask") -> np.ndarray:
    """Mask array -> float ``(T, H, W)`` in {0, 1}.

    Takes uint8/bool/float ``(H, W)``, ``(H, W, C)``, ``(T, H, W)`` or ``(T, H, W, C)``.

    uint8 values above 127 (floats above 0.5) are in the edit region; colour masks use their mean.
    """
    array = np.asarray(data)
    if array.ndim == 4 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4) and array.shape[0] > 4):
        array = array[..., :3].mean(axis=-1) if array.shape[-1] != 1 else array[..., 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise InputError(f"{name} must be (H, W), (T, H, W) or (T, H, W, C), got shape {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputError(
            f"{name} holds {bad} NaN/inf value(s) of {array.size}; a mask must be finite "
            "(0/1 floats, or 0..255): fix the mask array"
        )
    if array.dtype.kind not in "biuf":
        raise InputError(f"{name} must hold numbers (bool, int or float), got dtype {array.dtype}")
    threshold = 127.5 if array.dtype == np.uint8 or array.max(initial=0) > 1.0 else 0.5
    return (array.astype(np.float32) > threshold).astype(np.float32)


def load_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask video, image folder or single image; returns float ``(T, H, W)`` in {0, 1}."""
    from flowstudio.video import IMAGE_SUFFIXES, read_image, read_video

    file = Path(path)
    if file.suffix.lower() in IMAGE_SUFFIXES:
        return to_pixel_mask(read_image(file), str(file))
    return to_pixel_mask(read_video(file).frames, str(file))


def check_mask(mask: np.ndarray, frames: int, height: int, width: int) -> np.ndarray:
    """Broadcast a ``(1 or T, H, W)`` mask over ``frames``; raise a clear error on a size mismatch."""
    if mask.shape[1:] != (height, width):
        raise InputError(
            f"mask is {mask.shape[2]}x{mask.shape[1]} (WxH) but the video is {width}x{height}; "
            "give a mask of the video's size (or of the source file's size before normalisation)"
        )
    if mask.shape[0] == 1:
        return np.repeat(mask, frames, axis=0)
    if mask.shape[0] != frames:
        raise InputError(f"mask has {mask.shape[0]} frames but the video has {frames}; give 1 or {frames}")
    return mask


def latent_mask(
    mask: np.ndarray | torch.Tensor,
    latent_shape: tuple[int, ...],
    *,
    temporal_scale: int = 4,
    feather: int = 1,
) -> torch.Tensor:
    """Pixel mask ``(T, H, W)`` -> feathered latent mask ``(1, 1, T', H', W')`` (see module docstring)."""
    m = torch.as_tensor(np.asarray(mask), dtype=torch.float32)
    frames, height, width = m.shape
    _, _, t_lat, h_lat, w_lat = latent_shape
    if (frames - 1) // temporal_scale + 1 != t_lat:
        raise InputError(f"mask has {frames} frames, which does not match {t_lat} latent frames")
    groups = [m[:1]] + [m[1 + temporal_scale * (j - 1) : 1 + temporal_scale * j] for j in range(1, t_lat)]
    per_frame = torch.stack([g.amax(0) for g in groups])  # (T', H, W)
    cells = F.adaptive_max_pool2d(per_frame[:, None], (h_lat, w_lat))[:, 0]  # (T', H', W')
    return feather_mask(cells[None, None], feather)


def feather_mask(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Dilate a binary ``(1, 1, T, H, W)`` mask by ``radius`` cells, then box-blur it by ``radius``."""
    if radius < 0:
        raise InputError(f"feather must be >= 0 latent cells, got {radius}")
    if radius == 0:
        return mask.clone()
    size = 2 * radius + 1
    frames = mask[0].transpose(0, 1)  # (T, 1, H, W)
    grown = F.max_pool2d(frames, size, stride=1, padding=radius)
    soft = F.avg_pool2d(grown, size, stride=1, padding=radius, count_include_pad=False)
    soft = torch.where(frames >= 1.0, torch.ones_like(soft), soft)  # the region itself stays exactly 1
    return soft.transpose(0, 1)[None].clamp(0.0, 1.0)


class CrossAttentionDiffProbe:
    """Cross-attention processor that measures where two prompts' cross-attention differ.

    Expects a batch of 2 rows (source prompt, target prompt) at the same latent. Row 0's queries
    attend to both prompts' keys/values; ``||out_tgt - out_src||`` per token is accumulated into
    ``self.total`` ``(seq,)``. Returns the original processor's output, so the forward is unchanged.
    """

    def __init__(self, original: object, sink: dict[str, torch.Tensor]) -> None:
        self.original = original
        self.sink = sink

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None and hidden_states.shape[0] == 2:
            q, k, v = project_qkv(attn, hidden_states[:1], encoder_hidden_states)
            out_src = attend(q, k[:1], v[:1])
            out_tgt = attend(q, k[1:], v[1:])
            diff = (out_tgt - out_src).float().norm(dim=-1)[0]  # (seq,)
            self.sink["total"] = self.sink.get("total", torch.zeros_like(diff)) + diff
        return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)


@torch.no_grad()
def auto_mask(
    denoiser: EditDenoiser,
    x_src: torch.Tensor,
    source: Conditioning,
    target: Conditioning,
    *,
    sigma: float = 0.5,
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Binary latent edit mask ``(1, 1, T', H', W')`` where the prompts' cross-attention differ.

    The source latent ``x_src`` ``(1, C, T', H', W')`` is noised to ``sigma``; one model call with
    both prompts (no CFG) runs with :class:`CrossAttentionDiffProbe` on every block; the per-token
    difference is normalised by its maximum and thresholded at ``threshold``. An all-zero mask
    (prompts that do not differ) is returned as such, with a warning.
    """
    model = denoiser.denoiser.transformer
    noise = torch.randn(x_src.shape, generator=generator).to(x_src)
    x_t = (1 - sigma) * x_src + sigma * noise
    sink: dict[str, torch.Tensor] = {}
    restore = []
    for block in model.blocks:
        restore.append((block.attn2, block.attn2.processor))
        block.attn2.set_processor(CrossAttentionDiffProbe(block.attn2.processor, sink))
    try:
        plain = [
            Conditioning(prompt_embeds=c.prompt_embeds, first_frame=c.first_frame, mask=c.mask)
            for c in (source, target)
        ]
        # Identical prompts are deduplicated into one row: the probe then sees no pair and the mask is empty.
        denoiser.velocities([Request("src", x_t, plain[0]), Request("tgt", x_t, plain[1])], sigma)
    finally:
        for attn, original in restore:
            attn.set_processor(original)
    total = sink.get("total")
    p_t, p_h, p_w = denoiser.denoiser.patch_size
    _, _, t_lat, h_lat, w_lat = x_src.shape
    if total is None or float(total.max()) <= 0.0:
        logger.warning("auto mask is empty: the source and target prompts do not differ in cross-attention")
        return torch.zeros(1, 1, t_lat, h_lat, w_lat)
    grid = (total / total.max()).reshape(t_lat // p_t, h_lat // p_h, w_lat // p_w)
    cells = grid.repeat_interleave(p_t, 0).repeat_interleave(p_h, 1).repeat_interleave(p_w, 2)
    return (cells >= threshold).float()[None, None].cpu()
