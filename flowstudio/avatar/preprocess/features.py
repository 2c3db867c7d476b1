"""Steps 6 and 7 per segment: audio features, structure latents, VAE latents.

Every array says where it came from (``sources`` in the manifest), so a toy stand-in is never
mistaken for the real thing:

* audio features - ``hubert``: HuBERT-Large's last hidden state at 50 Hz from a local folder
  (:class:`flowstudio.avatar.model.audio.HubertExtractor`); ``logmel``: the toy DualForce's 80-bin
  log-mel at 50 Hz.
* structure - ``liveportrait``: LivePortrait's motion extractor on the aligned crops
  (:mod:`.liveportrait`); ``talkingshapes``: the TalkingShapes world's ground-truth structure latent
  (``clip_XXXXX.npz``), labelled as such, for toy runs only; ``none``: not written.
* VAE latents - ``toy``: the parameter-free :class:`~flowstudio.avatar.model.codec.ToyCodec` (the
  toy DualForce's); the Wan VAE is not wired here (``none`` skips latents).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from flowstudio.avatar.preprocess.config import PreprocessConfig
from flowstudio.errors import InputError


@lru_cache(maxsize=2)
def _audio_extractor(kind: str, hubert_path: str | None):  # one per worker process: HuBERT is 300M
    from flowstudio.avatar.model.audio import HubertExtractor, LogMelExtractor

    if kind == "hubert":
        return HubertExtractor(hubert_path)  # type: ignore[arg-type]
    return LogMelExtractor(80)


@lru_cache(maxsize=1)
def _liveportrait(path: str):
    from flowstudio.avatar.preprocess.liveportrait import LivePortraitMotion

    return LivePortraitMotion(path)


def load_extractors(config: PreprocessConfig) -> None:
    """Load the weight folders once up front, so a bad folder fails the run before any clip."""
    _audio_extractor(config.audio_features, config.hubert_path)
    if config.structure == "liveportrait":
        _liveportrait(config.liveportrait_path)  # type: ignore[arg-type]


def audio_features(audio: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """``(frames at 50 Hz, dim)`` float32 features of 16 kHz mono ``audio``."""
    extractor = _audio_extractor(config.audio_features, config.hubert_path)
    return extractor(audio, config.sample_rate).numpy().astype(np.float32)


def structure(
    crops: np.ndarray, source_indices: np.ndarray, video: Path, config: PreprocessConfig
) -> np.ndarray | None:
    """``(T, 7 + 3K)`` structure latents of a segment, or ``None`` with ``structure='none'``."""
    if config.structure == "none":
        return None
    if config.structure == "liveportrait":
        return _liveportrait(config.liveportrait_path)(crops)["structure"]  # type: ignore[arg-type]
    arrays = video.with_suffix(".npz")
    if not arrays.is_file():
        raise InputError(
            f"{video}: --structure talkingshapes reads the world's ground truth from {arrays.name}, "
            "which is missing; use it on TalkingShapes datasets only (--structure liveportrait or none)"
        )
    with np.load(arrays) as data:
        truth = data["structure"]
    if source_indices.max() >= len(truth):
        raise InputError(
            f"{arrays}: {len(truth)} frames of ground truth, video frame {source_indices.max()} asked"
        )
    return truth[source_indices].astype(np.float32)


def vae_latents(crops: np.ndarray, config: PreprocessConfig) -> np.ndarray | None:
    """``(12, F, S/stride, S/stride)`` toy-codec latents of ``4F`` frames, or ``None`` with ``vae='none'``."""
    if config.vae == "none":
        return None
    from flowstudio.avatar.model.codec import ToyCodec

    codec = ToyCodec(stride=config.codec_stride)
    return codec.encode_frames(crops)[0].numpy().astype(np.float32)
