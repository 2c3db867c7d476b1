"""The conditioning a data-free DMD student trains on: prompt states, and first-frame latents for TI2V rows.

DMD's generator never sees real videos (only the GAN term would): it needs prompts, and for
image-to-video rows a first frame. A :class:`PromptBank` is encoded once with the teacher's own text
encoder and VAE and stored in the run folder (``prompt_bank.pt``), so a resumed run reads the same bank.

Sources: ``shapeworld`` (the toy world's captions and first frames, from a seed stream no evaluation
uses) or a text file of prompts, one per line (text-to-video only: no first frames).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flowstudio.errors import InputError

logger = logging.getLogger(__name__)

SHAPEWORLD = "shapeworld"
# toy_quality.py's held-out prompts come from seed 10000; the distillation bank's stream is its own
BANK_STREAM = 7_000_001


@dataclass
class PromptBank:
    """``embeds`` ``(N, L, D)`` prompt states; ``negative`` ``(1, L, D)`` the CFG branch's states;
    ``first_frames`` ``(N, C, 1, h, w)`` normalised latents of each prompt's first frame, or ``None``;
    ``real_latents`` ``(N, C, T, h, w)`` of each prompt's true clip (the GAN term's real data) or ``None``."""

    prompts: list[str]
    embeds: torch.Tensor
    negative: torch.Tensor
    first_frames: torch.Tensor | None
    real_latents: torch.Tensor | None = None

    def save(self, path: Path) -> None:
        from flowstudio.train import atomic_save

        atomic_save(self.__dict__, path)

    @classmethod
    def load(cls, path: Path) -> PromptBank:
        return cls(**torch.load(path, weights_only=False))


def read_prompt_file(path: Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file; a clear error when there are none."""
    if not path.is_file():
        raise InputError(
            f"prompt file {path} does not exist; give one prompt per line, or use '{SHAPEWORLD}'"
        )
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise InputError(f"prompt file {path} has no prompts; write one prompt per line")
    return prompts


def captioned_spec(*key: int):
    """``(spec, caption)`` of a ShapeWorld scene drawn from the stream ``key`` (both from one rng)."""
    from flowstudio.worlds.captions import caption
    from flowstudio.worlds.shapes import random_spec

    rng = np.random.default_rng(list(key))
    spec = random_spec(rng)
    return spec, caption(spec, rng)


def shapeworld_prompts(count: int, seed: int, num_frames: int, height: int, width: int):
    """``count`` ShapeWorld captions with their clips (uint8 ``(T, H, W, 3)``)."""
    from flowstudio.worlds.shapes import render_clip

    prompts, frames = [], []
    for i in range(count):
        spec, text = captioned_spec(BANK_STREAM, seed, i)
        prompts.append(text)
        frames.append(render_clip(spec, num_frames, height, width))
    return prompts, frames


@torch.no_grad()
def build_prompt_bank(
    pipeline,
    source: str,
    count: int,
    seed: int,
    num_frames: int,
    height: int,
    width: int,
    negative_prompt: str = "",
    real_clips: bool = False,
) -> PromptBank:
    """Encode the prompts (and first frames; with ``real_clips`` the whole true clips too) of ``source``
    with the teacher's encoders (on CPU)."""
    if source == SHAPEWORLD:
        prompts, clips = shapeworld_prompts(count, seed, num_frames, height, width)
    else:
        prompts, clips = read_prompt_file(Path(source))[:count], None
    if real_clips and clips is None:
        raise InputError("real clips (the GAN term) come from ShapeWorld here: use prompts: shapeworld")
    logger.info("encoding %d prompts%s", len(prompts), " and first frames" if clips else "")
    embeds = torch.cat([pipeline.encode_prompt(p).float().cpu() for p in prompts])
    first, real = None, None
    if clips is not None:
        first = torch.cat([pipeline.encode_video(c[:1]).float().cpu() for c in clips])
        if real_clips:
            real = torch.cat([pipeline.encode_video(c).float().cpu() for c in clips])
    negative = pipeline.encode_prompt(negative_prompt).float().cpu()
    return PromptBank(prompts, embeds, negative, first, real)
