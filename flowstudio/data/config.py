"""Settings of ``flowstudio data build``: one frozen dataclass, checked where it is built, read from
YAML with :func:`flowstudio.recipes.read_recipe` (``configs/data/*.yaml``).

Two digests key the resumable stages: :meth:`BuildConfig.segment_digest` (what a video's segments
hold: probe, cuts, windows, size, filters, captions) and :meth:`BuildConfig.pair_digest` (that plus
the editing model and the checks). Changing only a pair setting redoes only the pairs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowstudio.checks import check_int, check_number, parse_dtype
from flowstudio.data.filters import FilterConfig
from flowstudio.errors import InputError

CAPTIONERS = ("auto", "metadata", "sidecar", "model")
PAIR_EDIT_TYPES = ("color", "background", "product")
ATTRIBUTE_CHECKS = ("auto", "readers", "clip")
_SEGMENT_KEYS = (
    "min_side", "fps_range", "min_seconds", "max_seconds", "decode_max_side", "fps", "shot_threshold",
    "frames", "height", "width", "windows_per_shot", "min_sharpness", "min_motion", "max_black_fraction",
    "max_frozen_fraction", "text_model", "text_input_size", "max_text_frames", "captioner", "caption_model",
    "crf",
)  # fmt: skip


@dataclass(frozen=True)
class BuildConfig:
    """Every setting of a dataset build (recorded in its datasheet).

    Attributes:
        min_side, fps_range, min_seconds, max_seconds: the probe's limits (refusals by reason).
        decode_max_side: frames are scaled down at decode time so that the long side is at most this.
        fps: output frame rate (the toy model's 16; Wan2.2-TI2V-5B's 24).
        shot_threshold: PySceneDetect ContentDetector threshold.
        frames: frames per training clip, ``4k + 1`` (the VAE packs 4 frames per latent frame).
        height, width: the model's size (multiples of 32); clips are scaled to cover it and
            centre-cropped.
        windows_per_shot: at most this many non-overlapping ``frames``-long clips per shot.
        min_sharpness, min_motion, max_black_fraction, max_frozen_fraction: the filters
            (:class:`~flowstudio.data.filters.FilterConfig`).
        text_model: a DB text-detection ``.onnx`` file (or a folder holding one): clips with burnt-in
            text on more than ``max_text_frames`` of 4 sampled frames are dropped
            (:mod:`~flowstudio.data.text`); ``None``: not checked (the datasheet says so).
        text_input_size: the side the text model reads (a multiple of 32; 736 for DB_TD500).
        dedup_max_distance: near duplicates: mean pHash Hamming distance (bits of 64) at most this.
        captioner: ``metadata`` (the ShapeWorld sidecar's spec), ``sidecar`` (``<video>.txt``),
            ``model`` (a local captioning model, ``caption_model``), ``auto`` (metadata, else sidecar,
            else the model when given; a clip with none is dropped as ``caption/none``).
        caption_model: folder of a local image-to-text model (transformers, e.g. BLIP).
        pairs: make source -> target pairs with the editing engine.
        model: the editing model (a local diffusers folder; the toy by default).
        edit_types: edit types to draw from, one per clip (ShapeWorld: color, background, product;
            own clips: color, by swapping the caption's colour word).
        edit_options: :class:`~flowstudio.edit.settings.EditSettings` values over the type's preset.
        attribute_check: ``readers`` (the world's readers; ShapeWorld), ``clip`` (CLIP similarity of
            the edit to the target prompt above the source prompt, by ``clip_margin``; needs
            ``clip_model``), ``auto`` (readers where the clip has ShapeWorld metadata, else clip).
        min_keep_psnr: PSNR (dB) of the edit against the source outside the edited region (where a
            mask is known), at least this.
        min_keep_ssim: SSIM of the whole frame against the source, at least this (clips without a mask).
        max_warp_ratio: the edit's motion-compensated warp error over the source's, at most this.
        seed: seed of the edit draws.
        device, dtype: where the editing model runs; ``dtype`` is the transformer's and text
            encoder's (default: float32 on CPU, bfloat16 on CUDA).
        vae_dtype: the VAE's dtype (default float32, as Wan recommends). ``bfloat16`` encodes and
            decodes 3-4x as fast on a CPU with bf16 arithmetic (AVX512-BF16/AMX): docs/guide_data.md.
        crf: x264 quality of the written clips (lower: closer to lossless).
    """

    min_side: int = 64
    fps_range: tuple[float, float] = (8.0, 61.0)
    min_seconds: float = 1.0
    max_seconds: float = 600.0
    decode_max_side: int = 512
    fps: float = 16.0
    shot_threshold: float = 27.0
    frames: int = 17
    height: int = 128
    width: int = 128
    windows_per_shot: int = 2
    min_sharpness: float = FilterConfig.min_sharpness
    min_motion: float = FilterConfig.min_motion
    max_black_fraction: float = FilterConfig.max_black_fraction
    max_frozen_fraction: float = FilterConfig.max_frozen_fraction
    text_model: str | None = None
    text_input_size: int = 736
    max_text_frames: float = 0.25
    dedup_max_distance: float = 8.0
    captioner: str = "auto"
    caption_model: str | None = None
    pairs: bool = True
    model: str | None = None
    edit_types: tuple[str, ...] = ("color", "background")
    edit_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    attribute_check: str = "auto"
    clip_model: str | None = None
    clip_margin: float = 0.0
    min_keep_psnr: float = 22.0
    min_keep_ssim: float = 0.6
    max_warp_ratio: float = 1.5
    seed: int = 0
    device: str = "cpu"
    dtype: str | None = None
    vae_dtype: str | None = None
    crf: int = 12

    def __post_init__(self) -> None:
        object.__setattr__(self, "fps_range", tuple(float(v) for v in self.fps_range))
        object.__setattr__(self, "edit_types", tuple(self.edit_types))
        for name, allowed in (("captioner", CAPTIONERS), ("attribute_check", ATTRIBUTE_CHECKS)):
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("min_seconds", "max_seconds", "fps", "max_warp_ratio"):
            check_number(name, getattr(self, name), positive=True)
        for name in ("min_side", "decode_max_side", "frames", "windows_per_shot"):
            check_int(name, getattr(self, name), minimum=1)
        if self.frames % 4 != 1:
            raise InputError(f"frames must be 4k+1 (17, 33, 49, ...) for the VAE, got {self.frames}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 32 or value % 32:
                raise InputError(f"{name} must be a positive multiple of 32, got {value!r}")
        if self.min_seconds > self.max_seconds:
            raise InputError(f"min_seconds {self.min_seconds} is above max_seconds {self.max_seconds}")
        low, high = self.fps_range
        if not 0 < low <= high:
            raise InputError(f"fps_range must be (low, high) with 0 < low <= high, got {self.fps_range!r}")
        if not self.edit_types or any(t not in PAIR_EDIT_TYPES for t in self.edit_types):
            raise InputError(
                f"edit_types must be a non-empty list of {', '.join(PAIR_EDIT_TYPES)}, "
                f"got {list(self.edit_types)}"
            )
        if not isinstance(self.edit_options, dict):
            raise InputError(f"edit_options must map EditSettings fields to values: {self.edit_options!r}")
        if self.captioner == "model" and not self.caption_model:
            raise InputError("captioner 'model' needs caption_model: a local image-to-text model folder")
        if self.attribute_check == "clip" and not self.clip_model:
            raise InputError("attribute_check 'clip' needs clip_model: a local CLIP folder")
        parse_dtype(self.dtype, "dtype")  # a typo fails here, not after the clips stage
        parse_dtype(self.vae_dtype, "vae_dtype")
        if self.crf < 0 or self.crf > 51:
            raise InputError(f"crf must be in 0..51, got {self.crf}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def filters(self) -> FilterConfig:
        return FilterConfig(
            min_sharpness=self.min_sharpness,
            min_motion=self.min_motion,
            max_black_fraction=self.max_black_fraction,
            max_frozen_fraction=self.max_frozen_fraction,
        )

    def segment_digest(self) -> str:
        """Hash of the settings a video's segments depend on (keys the segment done-records)."""
        data = {key: getattr(self, key) for key in _SEGMENT_KEYS}
        for key in ("caption_model", "text_model"):
            if data[key]:
                data[key] = str(Path(data[key]).resolve())
        return _hash(data)

    def pair_digest(self) -> str:
        """Hash of everything a pair depends on (keys the pair done-records)."""
        data = self.to_dict()
        data.pop("dedup_max_distance")  # which segments survive dedup is part of the pair task itself
        if data["vae_dtype"] is None:
            data.pop("vae_dtype")  # unset keeps the digests of builds made before the key existed
        for key in ("model", "caption_model", "clip_model", "text_model"):
            if data[key]:
                data[key] = str(Path(data[key]).resolve())
        return _hash(data)


def _hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_build_config(path: str | Path | None, **overrides: Any) -> BuildConfig:
    """A :class:`BuildConfig` from a YAML recipe (``None``: defaults) with ``overrides`` on top."""
    values: dict[str, Any] = {}
    if path is not None:
        from flowstudio.recipes import read_recipe

        values = read_recipe(path, hint="see configs/data/ for examples")
    known = {f.name for f in dataclasses.fields(BuildConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"{path}: unknown data-build settings {unknown}; known: {sorted(known)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return BuildConfig(**values)
