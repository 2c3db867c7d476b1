"""Settings of ``flowstudio avatar preprocess``: one frozen dataclass, checked where it is built."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowstudio.errors import InputError

DETECTORS = ("mediapipe", "talkingshapes")
STRUCTURES = ("none", "talkingshapes", "liveportrait")
AUDIO_FEATURES = ("logmel", "hubert")
VAES = ("toy", "none")
LAYOUTS = ("auto", "folder", "hdtf", "celebvhq", "talkingshapes")


@dataclass(frozen=True)
class PreprocessConfig:
    """Every setting that changes what a clip's outputs hold (its hash keys the done-records).

    Attributes:
        layout: how input files map to identities (``auto`` guesses from the folder).
        min_seconds: shortest input video, and shortest kept segment after cuts and tracking.
        max_seconds: longest input video (videos are decoded whole into memory; see the guide).
        min_side: smallest input height/width in pixels.
        fps_range: accepted input frame rates (inclusive).
        decode_max_side: frames are scaled down at decode time so that the long side is at most this.
        fps: output frame rate (25: DualForce's 4 frames per 160 ms latent frame).
        sample_rate: output audio rate (16 kHz: HuBERT's).
        shot_threshold: PySceneDetect ContentDetector threshold (its default, 27).
        detector: face detector (``mediapipe``: real faces; ``talkingshapes``: the toy world's own
            ground-truth face box, only for TalkingShapes clips).
        detect_every: run the detector on every n-th frame and interpolate the box in between.
        max_gap: frames without a face bridged by interpolation; a longer gap ends the segment.
        crop_scale: square crop side as a multiple of the face box's larger side.
        smooth_sigma: Gaussian smoothing of the crop centre and size over time, in frames.
        size: output side in pixels (square).
        sync_max_offset: audio-video lags searched, +-frames.
        sync_min_confidence: peak correlation below which a segment is refused (sync too weak). 0.5
            separates true from swapped audio on TalkingShapes (true 0.71-0.92, swapped 0.21-0.45 on
            ten clips); real faces with the pixel proxy correlate less, so calibrate it on your data.
        sync_tolerance: measured offsets with ``|offset| <= tolerance`` are left as they are.
        audio_features: ``logmel`` (the toy's) or ``hubert`` (needs ``hubert_path``).
        structure: ``none``, ``talkingshapes`` (the toy's ground truth) or ``liveportrait``.
        vae: ``toy`` (the toy codec) or ``none``.
        codec_stride: spatial stride of the toy codec.
        split_fractions: (val, test) fractions of identities; the rest are train.
        split_seed: seed of the identity shuffle.
    """

    layout: str = "auto"
    min_seconds: float = 1.0
    max_seconds: float = 120.0
    min_side: int = 64
    fps_range: tuple[float, float] = (20.0, 61.0)
    decode_max_side: int = 512
    fps: float = 25.0
    sample_rate: int = 16000
    shot_threshold: float = 27.0
    detector: str = "mediapipe"
    detect_every: int = 1
    max_gap: int = 5
    crop_scale: float = 1.6
    smooth_sigma: float = 2.0
    size: int = 128
    sync_max_offset: int = 8
    sync_min_confidence: float = 0.5
    sync_tolerance: int = 1
    audio_features: str = "logmel"
    hubert_path: str | None = None
    structure: str = "none"
    liveportrait_path: str | None = None
    syncnet_path: str | None = None
    vae: str = "toy"
    codec_stride: int = 4
    split_fractions: tuple[float, float] = (0.1, 0.1)
    split_seed: int = 0

    def __post_init__(self) -> None:
        choices = {
            "layout": LAYOUTS,
            "detector": DETECTORS,
            "structure": STRUCTURES,
            "audio_features": AUDIO_FEATURES,
            "vae": VAES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        positive = ("min_seconds", "max_seconds", "min_side", "decode_max_side", "fps", "sample_rate",
                    "detect_every", "size", "crop_scale")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InputError(f"{name} must be a positive number, got {value!r}")
        if self.min_seconds > self.max_seconds:
            raise InputError(f"min_seconds {self.min_seconds} is above max_seconds {self.max_seconds}")
        low, high = self.fps_range
        if not 0 < low <= high:
            raise InputError(f"fps_range must be (low, high) with 0 < low <= high, got {self.fps_range!r}")
        if self.size % 32:
            raise InputError(f"size must be a multiple of 32 (the DualForce video tower's), got {self.size}")
        if self.size % self.codec_stride:
            raise InputError(f"size {self.size} must be a multiple of codec_stride {self.codec_stride}")
        if self.audio_features == "hubert" and not self.hubert_path:
            raise InputError("audio_features='hubert' needs --hubert PATH (a local HuBERT-Large folder)")
        if self.structure == "liveportrait" and not self.liveportrait_path:
            raise InputError("structure='liveportrait' needs --liveportrait PATH (a local weight folder)")
        val, test = self.split_fractions
        if val < 0 or test < 0 or val + test >= 1:
            raise InputError(
                f"split_fractions (val, test) must be >= 0 and sum below 1, got {self.split_fractions}"
            )
        if self.sync_max_offset < 0 or self.sync_tolerance < 0:
            raise InputError("sync_max_offset and sync_tolerance must be >= 0 frames")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short hash of the settings (weight folders by their resolved path): keys the done-records."""
        data = self.to_dict()
        for key in ("split_fractions", "split_seed"):  # splits are made at the end, not per clip
            data.pop(key)
        for key in ("hubert_path", "liveportrait_path", "syncnet_path"):
            if data[key]:
                data[key] = str(Path(data[key]).resolve())
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
