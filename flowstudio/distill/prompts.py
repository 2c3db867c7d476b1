"""The conditioning a data-free DMD student trains on: prompt states, and first-frame latents for TI2V rows.

DMD's generator never sees real videos (only the GAN term would): it needs prompts, and for
image-to-video rows a first frame. A :class:`PromptBank` is encoded once with the teacher's own text
encoder and VAE and stored in the run folder (``prompt_bank.pt``), so a resumed run reads the same bank.

Sources:

* ``shapeworld``: the toy world's captions and first frames, from a seed stream no evaluation uses;
* a dataset folder made by ``flowstudio data build`` (it holds ``clips.parquet``): every kept clip with
  its caption, and every kept pair's target clip with its target prompt (the e-commerce edits), in id
  order; their first frames for image-to-video rows and the clips themselves as the GAN term's real data;
* a text file of prompts, one per line (text-to-video only: no first frames).
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


def holding(prompts: list[str], phrase: str, option: str) -> list[bool]:
    """Which prompts hold ``phrase`` (case-insensitive). A phrase no prompt holds is an error naming
    ``option``: a typo would otherwise train on the wrong rows without a word."""
    hits = [phrase.lower() in text.lower() for text in prompts]
    if not any(hits):
        raise InputError(
            f"{option}: no prompt of the bank's {len(prompts)} holds {phrase!r}; check its spelling"
        )
    return hits


def is_dataset(source: str) -> bool:
    """Whether ``source`` is a folder made by ``flowstudio data build``."""
    return Path(source).is_dir() and (Path(source) / "clips.parquet").is_file()


def dataset_prompts(folder: str, count: int, num_frames: int, height: int, width: int):
    """Up to ``count`` ``(prompt, clip)`` rows of a built dataset: its clips with their captions, then
    its pairs' targets with their target prompts (both in id order), as two lists."""
    import pyarrow.parquet as pq

    from flowstudio.video import read_video

    root = Path(folder)
    rows = [(r["caption"], r["video"]) for r in pq.read_table(root / "clips.parquet").to_pylist()]
    manifest = root / "manifest.parquet"
    if manifest.is_file():
        rows += [(r["target_prompt"], r["target_video"]) for r in pq.read_table(manifest).to_pylist()]
    if not rows:
        raise InputError(f"dataset {root} has no clips: build it with `flowstudio data build`")
    prompts, clips = [], []
    for text, video in rows[:count]:
        frames = read_video(root / video).frames
        if frames.shape != (num_frames, height, width, 3):
            raise InputError(
                f"{root / video} is {frames.shape[0]} frames of {frames.shape[1]}x{frames.shape[2]}, but the "
                f"run samples {num_frames} frames of {height}x{width}: build the dataset at the run's size"
            )
        prompts.append(text)
        clips.append(frames)
    return prompts, clips


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
    elif is_dataset(source):
        prompts, clips = dataset_prompts(source, count, num_frames, height, width)
    else:
        prompts, clips = read_prompt_file(Path(source))[:count], None
    if real_clips and clips is None:
        raise InputError(
            "real clips (the GAN term) need a video source: prompts: shapeworld, or a folder made by "
            "`flowstudio data build`"
        )
    logger.info("encoding %d prompts%s", len(prompts), " and first frames" if clips else "")
    embeds = torch.cat([pipeline.encode_prompt(p).float().cpu() for p in prompts])
    first, real = None, None
    if clips is not None:
        first = torch.cat([pipeline.encode_video(c[:1]).float().cpu() for c in clips])
        if real_clips:
            real = torch.cat([pipeline.encode_video(c).float().cpu() for c in clips])
    negative = pipeline.encode_prompt(negative_prompt).float().cpu()
    return PromptBank(prompts, embeds, negative, first, real)
