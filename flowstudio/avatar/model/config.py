"""Typed, frozen configs for DualForce (one dataclass per component).

An experiment is a small override of a preset (:func:`toy_config`, :func:`mova_lite_config`,
:func:`mova_360p_config`), written in YAML as ``preset: toy`` plus the fields that change
(``configs/dualforce/toy.yaml``). Configs are data: :meth:`DualForceConfig.to_dict` is saved beside
every checkpoint and :meth:`DualForceConfig.from_dict` rebuilds the model from it, so a checkpoint
never depends on code defaults.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flowstudio.errors import InputError

BridgeStrategy = Literal["shallow", "full", "none"]
AudioPaths = Literal["dual", "video", "struct"]


@dataclass(frozen=True)
class TowerConfig:
    """One DiT tower built from diffusers' ``WanTransformerBlock``.

    Attributes:
        dim: hidden width ``D``; ``num_heads`` must divide it.
        num_layers: number of transformer blocks.
        num_heads: attention heads (head dim ``D / num_heads``).
        ffn_dim: feed-forward inner width.
        in_channels: input channels per token source (video: latent channels plus conditioning
            channels, see :class:`VideoInputConfig`; structure: the structure-latent width).
        out_channels: predicted channels (velocity) per frame.
        patch_size: ``(t, h, w)`` patch of the video tower; ``(1, 1, 1)`` for the structure tower.
        freq_dim: sinusoidal timestep embedding width.
        eps: norm epsilon.
        rope_max_positions: rotary table length in temporal positions (frames); a position beyond it
            raises. Streams with a window stay far below it (the cache keeps window-relative
            positions, at most ``(window + 1) x`` a chunk's frames); full-sequence calls
            (training) use absolute positions.
    """

    dim: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    in_channels: int
    out_channels: int
    patch_size: tuple[int, int, int] = (1, 2, 2)
    freq_dim: int = 256
    eps: float = 1e-6
    rope_max_positions: int = 16384

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


@dataclass(frozen=True)
class VideoInputConfig:
    """How the video tower's input channels are assembled.

    ``in_channels = latent_channels + mask_channels + (latent_channels if concat_reference or
    reference_every_frame)``. With MOVA's layout (16 VAE + 4 mask + 16 first-frame latent = 36) every
    frame carries the mask (1 on the reference frame, 0 elsewhere) and the reference latent (on the
    reference frame, zeros elsewhere). ``reference_every_frame`` puts the reference latent on *every*
    frame instead (as Stable Video Diffusion conditions on its image): each patch sees the reference
    at its own position, so a small model keeps the identity without routing it through attention.
    ``residual_to_reference`` makes the tower denoise each generated frame's difference from the
    reference latent (:mod:`flowstudio.avatar.model.residual`); callers still see codec latents.
    """

    latent_channels: int = 16
    mask_channels: int = 0
    concat_reference: bool = False
    reference_every_frame: bool = False
    residual_to_reference: bool = False

    @property
    def in_channels(self) -> int:
        with_reference = self.concat_reference or self.reference_every_frame
        return self.latent_channels + self.mask_channels + (self.latent_channels if with_reference else 0)


@dataclass(frozen=True)
class BridgeConfig:
    """Bidirectional cross-attention between the towers.

    ``shallow`` bridges the first ``num_layers`` layers (MOVA's ``shallow_focus`` idea), ``full``
    bridges every layer both towers have, ``none`` disables the bridge. Bridge attention is
    block-causal in time like the towers; keys are cached per bridged layer.

    ``frame_aligned`` adds, at every bridged layer, a structure -> video path along the time axis:
    each latent frame's video tokens receive that frame's own structure frames, concatenated in
    order (:class:`flowstudio.avatar.model.bridge.FrameAlignedStructure`). The attention bridge
    carries no positions, so on its own it cannot tell which of a chunk's structure frames belongs
    to which video frame. Off by default (MOVA has no such path; checkpoints without it load as before).
    """

    strategy: BridgeStrategy = "shallow"
    num_layers: int = 8
    head_dim: int = 128
    frame_aligned: bool = False

    def layers(self, video_layers: int, struct_layers: int) -> tuple[int, ...]:
        """Indices of the bridged layers."""
        both = min(video_layers, struct_layers)
        if self.strategy == "none":
            return ()
        if self.strategy == "full":
            return tuple(range(both))
        return tuple(range(min(self.num_layers, both)))


@dataclass(frozen=True)
class AudioConfig:
    """Audio features and the AudioConditioningModule.

    Attributes:
        feature: ``"logmel"`` (toy world) or ``"hubert"`` (HuBERT-Large from a local folder).
        feature_dim: channels of one 50 Hz feature frame (HuBERT-Large 1024, log-mel ``n_mels``).
        sample_rate / hop_length: waveform rate and hop; ``sample_rate / hop_length`` must be 50 Hz.
        hidden_dim: width of the conditioning MLP.
        hubert_path: local HuBERT folder (``config.json`` + weights) for ``feature="hubert"``.
        paths: which towers hear the audio: ``dual`` (both: audio -> video directly and through the
            structure), ``video`` or ``struct`` only (single-path ablations: the other tower's
            cross-attention reads the learned null token everywhere).
        struct_trains_encoder: with ``dual``, whether the structure tower's losses train the shared
            audio MLP and positions (True) or stop at its own projection (False: the encoder learns
            from the video tower alone, as in single-path ``video``, while both towers still hear the
            audio). A training switch only; inference is the same either way. It probes why
            single-path audio trains worse lip-sync (docs/guide_avatar.md).
    """

    feature: Literal["logmel", "hubert"] = "logmel"
    feature_dim: int = 80
    sample_rate: int = 16000
    hop_length: int = 320
    hidden_dim: int = 256
    hubert_path: str | None = None
    paths: AudioPaths = "dual"
    struct_trains_encoder: bool = True


@dataclass(frozen=True)
class RatesConfig:
    """Token rates (see :mod:`flowstudio.avatar.model.rates`)."""

    video_fps: float = 25.0
    vae_temporal_stride: int = 4
    struct_rate: float = 25.0
    audio_rate: float = 50.0
    frames_per_chunk: int = 1


@dataclass(frozen=True)
class ForcingConfig:
    """Multimodal diffusion forcing (training noise) and inference schedule.

    Training draws one sigma per frame and per modality: ``sigma_video ~ U(video_range)`` per latent
    frame, ``sigma_struct ~ U(struct_range)`` per structure frame (asymmetric by default: the
    structure is kept cleaner so that it leads the video).

    ``per_frame_noise=False`` (the "no diffusion forcing" ablation) draws one ``u ~ U(0, 1)`` per clip
    and uses it for every frame of both modalities (each mapped into its own range).
    ``reference_sink=False`` (the "no reference sink" ablation) lets the reference block leave the
    attention window and the KV cache like any other block. ``train_shift`` > 1 draws training levels
    as ``shift_sigmas(u, train_shift)`` before mapping them into each range (1: uniform), putting more
    of the training on the high levels the streaming schedule starts from (Wan trains with a shift too).

    ``context_sigma`` (inference only, default 0: the clean commit of Self-Forcing) re-noises each
    generated chunk to that level before the commit pass writes it into the KV cache (the structure
    to ``context_sigma * struct_range[1]``), as Diffusion Forcing conditions on a slightly noisy past.
    Why: training noises every context frame independently, so a context that is clean throughout is
    a condition it almost never shows (with ``train_shift`` 3, a frame's level is under 0.05 only 1.7%
    of the time), and the model's own small errors in clean context are never seen at all.

    ``audio_guidance`` (inference only, default 1 = off) is the sampler's default classifier-free
    guidance scale on the audio against silence, for a model trained with ``train.audio_dropout``.
    Both are the defaults of :func:`~flowstudio.avatar.inference.streaming.stream_latents`, which a
    call can override; a checkpoint carries the values its model was measured best with.

    ``clean_struct_prob`` (training only, default 0): the probability that a training item's structure
    is given clean, with no structure loss on it (:mod:`~flowstudio.avatar.model.diffusion_forcing`).

    ``video_guidance`` (inference only; ``None``: ``audio_guidance``) is the guidance scale of the video
    velocity alone, the structure keeping ``audio_guidance``: with a video that follows its structure
    (``bridge.frame_aligned``) the audio can be pushed through the structure while the video is left
    unguided (guided video over-opens the mouth). ``structure_first`` (inference only) samples each
    chunk's structure to the end first, the video held at pure noise, and then the video with that
    clean structure fixed (twice the model calls): the video's first steps then see the chunk's whole
    motion instead of a structure as noisy as themselves.
    """

    video_range: tuple[float, float] = (0.0, 1.0)
    struct_range: tuple[float, float] = (0.0, 0.7)
    shift: float = 3.0
    inference_steps: int = 4
    window_chunks: int = 4
    per_frame_noise: bool = True
    reference_sink: bool = True
    train_shift: float = 1.0
    context_sigma: float = 0.0
    audio_guidance: float = 1.0
    video_guidance: float | None = None
    structure_first: bool = False
    clean_struct_prob: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.clean_struct_prob <= 1.0:
            raise ValueError(f"forcing.clean_struct_prob must be in [0, 1], got {self.clean_struct_prob}")
        if not 0.0 <= self.context_sigma < 1.0:
            raise ValueError(
                f"forcing.context_sigma must be in [0, 1) (0: clean commit), got {self.context_sigma}"
            )
        if not self.audio_guidance >= 0.0:
            raise ValueError(f"forcing.audio_guidance must be >= 0 (1: off), got {self.audio_guidance}")
        if self.video_guidance is not None and not self.video_guidance >= 0.0:
            raise ValueError(
                "forcing.video_guidance must be >= 0 (1: off; null: audio_guidance), "
                f"got {self.video_guidance}"
            )


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms (:mod:`flowstudio.avatar.training.losses`)."""

    video: float = 1.0
    struct: float = 1.0
    flame: float = 0.1
    lip_sync: float = 0.0


@dataclass(frozen=True)
class StructureLayout:
    """Layout of one structure frame (a LivePortrait motion latent): pose (3), translation (3),
    scale (1), ``num_keypoints`` x 3 implicit 3D keypoints.

    ``mean`` / ``std`` (one value per channel, or ``None``) normalise the raw latent for the structure
    tower, ``x_tower = (x_raw - mean) / std``, as Wan's ``latents_mean`` / ``latents_std`` do for video:
    raw head motion moves by a few hundredths per frame, far below the unit noise of flow matching.
    Training on a dataset fills them from its statistics and they are saved with the checkpoint.
    """

    num_keypoints: int = 21
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != self.channels:
                raise InputError(
                    f"structure.{name} has {len(value)} values, the layout has {self.channels} channels"
                )
        if self.std is not None and min(self.std) <= 0:
            raise InputError("structure.std values must be positive")

    @property
    def channels(self) -> int:
        return 7 + 3 * self.num_keypoints

    def normalize(self, raw: Any) -> Any:
        """Raw structure ``(..., C_s)`` (tensor) -> the tower's normalised scale (identity when unset)."""
        if self.mean is None or self.std is None:
            return raw
        return (raw - raw.new_tensor(self.mean)) / raw.new_tensor(self.std)

    def denormalize(self, normalized: Any) -> Any:
        """Inverse of :meth:`normalize`."""
        if self.mean is None or self.std is None:
            return normalized
        return normalized * normalized.new_tensor(self.std) + normalized.new_tensor(self.mean)


@dataclass(frozen=True)
class DualForceConfig:
    """The whole model: video tower, structure tower, bridge, audio path, rates, forcing, losses."""

    name: str
    video: TowerConfig
    struct: TowerConfig
    video_input: VideoInputConfig = field(default_factory=VideoInputConfig)
    structure: StructureLayout = field(default_factory=StructureLayout)
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    rates: RatesConfig = field(default_factory=RatesConfig)
    forcing: ForcingConfig = field(default_factory=ForcingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    image_size: tuple[int, int] = (64, 64)
    vae_spatial_stride: int = 8

    def __post_init__(self) -> None:
        for label, tower in (("video", self.video), ("struct", self.struct)):
            if tower.dim % tower.num_heads:
                raise InputError(
                    f"{label}.dim ({tower.dim}) must be divisible by {label}.num_heads ({tower.num_heads})"
                )
        if self.video.in_channels != self.video_input.in_channels:
            raise InputError(
                f"video.in_channels ({self.video.in_channels}) must equal latent + mask + "
                f"reference channels ({self.video_input.in_channels})"
            )
        if self.audio.sample_rate / self.audio.hop_length != self.rates.audio_rate:
            raise InputError(
                f"audio.sample_rate / audio.hop_length = {self.audio.sample_rate}/{self.audio.hop_length} "
                f"must equal rates.audio_rate ({self.rates.audio_rate} Hz)"
            )
        if self.struct.in_channels != self.structure.channels:
            raise InputError(
                f"struct.in_channels ({self.struct.in_channels}) must equal the structure "
                f"layout width 7 + 3 * {self.structure.num_keypoints} = {self.structure.channels}"
            )

    @property
    def latent_size(self) -> tuple[int, int]:
        """Latent ``(h, w)`` of ``image_size``."""
        return self.image_size[0] // self.vae_spatial_stride, self.image_size[1] // self.vae_spatial_stride

    @property
    def bridge_layers(self) -> tuple[int, ...]:
        return self.bridge.layers(self.video.num_layers, self.struct.num_layers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DualForceConfig:
        """Rebuild from :meth:`to_dict` output (tuples restored; unknown keys rejected)."""
        return _build(cls, data, "config")

    def replace(self, overrides: dict[str, Any]) -> DualForceConfig:
        """A copy with nested overrides, e.g. ``{"video": {"num_layers": 4}}``."""
        from flowstudio.recipes import deep

        return DualForceConfig.from_dict(deep(self.to_dict(), overrides))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise InputError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(f"{where}: unknown field(s) {unknown}; known: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for key, value in data.items():
        sub = _NESTED.get(hints[key]) if isinstance(hints[key], str) else None
        if sub is not None:
            kwargs[key] = _build(sub, value, f"{where}.{key}")
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


_NESTED: dict[str, type] = {
    "TowerConfig": TowerConfig,
    "VideoInputConfig": VideoInputConfig,
    "StructureLayout": StructureLayout,
    "BridgeConfig": BridgeConfig,
    "AudioConfig": AudioConfig,
    "RatesConfig": RatesConfig,
    "ForcingConfig": ForcingConfig,
    "LossConfig": LossConfig,
}


# ----------------------------------------------------------------------------------------------
# Presets


def toy_config() -> DualForceConfig:
    """Tiny config for tests and CPU demos: 2 layers, dim 32, 64x64 frames, log-mel audio.

    The video latent is the toy codec's 12 channels (4 frames x RGB at 1/8 resolution,
    :mod:`flowstudio.avatar.model.codec`); the structure latent has 5 keypoints (22 channels).
    """
    structure = StructureLayout(num_keypoints=5)
    return DualForceConfig(
        name="toy",
        video=TowerConfig(
            dim=32,
            num_layers=2,
            num_heads=2,
            ffn_dim=64,
            in_channels=12,
            out_channels=12,
            patch_size=(1, 2, 2),
            freq_dim=32,
        ),
        struct=TowerConfig(
            dim=32,
            num_layers=2,
            num_heads=2,
            ffn_dim=64,
            in_channels=structure.channels,
            out_channels=structure.channels,
            patch_size=(1, 1, 1),
            freq_dim=32,
        ),
        video_input=VideoInputConfig(latent_channels=12),
        structure=structure,
        bridge=BridgeConfig(strategy="shallow", num_layers=1, head_dim=16),
        audio=AudioConfig(feature="logmel", feature_dim=40, sample_rate=16000, hop_length=320, hidden_dim=32),
        rates=RatesConfig(frames_per_chunk=1),
        forcing=ForcingConfig(inference_steps=2, window_chunks=3),
        image_size=(64, 64),
    )


def mova_lite_config() -> DualForceConfig:
    """MOVA-Lite: MOVA's Wan-style dual-tower DiT reduced to a ~2B dense model.

    Video tower 1536 wide x 28 layers (Wan2.1-1.3B width), structure tower 1024 x 28, bridge on the
    first 8 layers, HuBERT-Large audio features, MOVA's 36-channel video input at 360p.
    """
    structure = StructureLayout(num_keypoints=21)
    return DualForceConfig(
        name="mova-lite",
        video=TowerConfig(
            dim=1536, num_layers=28, num_heads=12, ffn_dim=8960, in_channels=36, out_channels=16
        ),
        struct=TowerConfig(
            dim=1024,
            num_layers=28,
            num_heads=8,
            ffn_dim=4096,
            in_channels=structure.channels,
            out_channels=structure.channels,
            patch_size=(1, 1, 1),
        ),
        video_input=VideoInputConfig(latent_channels=16, mask_channels=4, concat_reference=True),
        structure=structure,
        bridge=BridgeConfig(strategy="shallow", num_layers=8, head_dim=128),
        audio=AudioConfig(
            feature="hubert", feature_dim=1024, sample_rate=16000, hop_length=320, hidden_dim=1024
        ),
        rates=RatesConfig(frames_per_chunk=3),
        image_size=(352, 640),
    )


def mova_360p_config() -> DualForceConfig:
    """MOVA-360p shapes (from its checkpoint configs): video 5120 x 40 layers, 40 heads, ffn 13824,
    patch (1, 2, 2), in_dim 36 = 16 VAE + 4 mask + 16 first frame; second tower 1536 x 30 (MOVA's
    audio tower width), full bridge; audio 48 kHz / hop 960 = 50 Hz."""
    structure = StructureLayout(num_keypoints=21)
    return DualForceConfig(
        name="mova-360p",
        video=TowerConfig(
            dim=5120, num_layers=40, num_heads=40, ffn_dim=13824, in_channels=36, out_channels=16
        ),
        struct=TowerConfig(
            dim=1536,
            num_layers=30,
            num_heads=12,
            ffn_dim=8960,
            in_channels=structure.channels,
            out_channels=structure.channels,
            patch_size=(1, 1, 1),
        ),
        video_input=VideoInputConfig(latent_channels=16, mask_channels=4, concat_reference=True),
        structure=structure,
        bridge=BridgeConfig(strategy="full", num_layers=30, head_dim=128),
        audio=AudioConfig(
            feature="hubert", feature_dim=1024, sample_rate=48000, hop_length=960, hidden_dim=1536
        ),
        rates=RatesConfig(frames_per_chunk=3),
        image_size=(352, 640),
    )


PRESETS = {"toy": toy_config, "mova-lite": mova_lite_config, "mova-360p": mova_360p_config}


def preset(name: str) -> DualForceConfig:
    """A preset by name (``toy``, ``mova-lite``, ``mova-360p``)."""
    if name not in PRESETS:
        raise InputError(f"unknown DualForce preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def read_run_yaml(path: str | Path) -> dict[str, Any]:
    """A run YAML as a dict, with ``base: other.yaml`` (relative to the file) merged underneath it
    section by section: an ablation is its base run plus the fields that change."""
    from flowstudio.recipes import deep, read_recipe

    return read_recipe(path, deep, hint="see configs/dualforce/toy.yaml")


def load_config(path: str | Path) -> tuple[DualForceConfig, dict[str, Any]]:
    """Read a run YAML: ``preset`` + ``model`` overrides (after merging its ``base``); returns
    ``(config, rest)`` where ``rest`` holds the other sections (``train`` ...)."""
    data = read_run_yaml(path)
    config = preset(data.pop("preset", "toy")).replace(data.pop("model", {}) or {})
    return config, data
