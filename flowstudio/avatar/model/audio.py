"""Audio: reading, 50 Hz features behind one interface, and the AudioConditioningModule.

Two feature extractors share one call, ``extractor(waveform, sample_rate) -> (frames, dim)`` at 50 Hz
(``frames = len(waveform at the extractor's rate) // hop``, one feature per 20 ms):

* :class:`LogMelExtractor` - log-mel spectrogram, hop 320 at 16 kHz (the toy world);
* :class:`HubertExtractor` - HuBERT-Large's last hidden state from a *local* folder through
  transformers' ``HubertModel`` (frozen, eval; its conv front end has stride 320 at 16 kHz = 50 Hz).

:class:`AudioConditioningModule` turns features into per-block audio tokens for both towers: an MLP
per 20 ms frame, a learned within-block position (which of the 8 frames of a 160 ms latent frame),
and one learned *null* token for the reference sink block. The video tower reads them directly
(audio -> video cross-attention) and the structure tower reads them too (audio -> 3D -> video
through the bridge): the dual path.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Protocol

import av
import numpy as np
import torch
from torch import nn

from flowstudio.avatar.model.config import AudioConfig
from flowstudio.avatar.model.kv_cache import SINK_BLOCK
from flowstudio.errors import CheckpointError, InputError, VideoError

logger = logging.getLogger(__name__)

FEATURE_RATE = 50.0


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode the first audio stream of ``path`` (wav, mp3, m4a, mp4 ...) to mono float32 ``(samples,)``
    at ``sample_rate``."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"audio file {str(file)!r} not found; give a wav/mp3/m4a file with speech")
    try:
        with av.open(str(file)) as container:
            if not container.streams.audio:
                raise InputError(f"{file}: has no audio stream; give a file with speech")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks: list[np.ndarray] = []
            for frame in container.decode(container.streams.audio[0]):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.FFmpegError as err:
        raise VideoError(f"{file}: audio cannot be decoded ({err}); convert it to 16-bit PCM wav") from err
    if not chunks:
        raise InputError(f"{file}: audio stream is empty")
    return np.concatenate(chunks).astype(np.float32, copy=False)


def resample(waveform: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Linear-interpolation resampling of mono ``(samples,)`` audio (features only, not playback)."""
    if rate == new_rate:
        return waveform
    n = int(round(len(waveform) * new_rate / rate))
    return np.interp(np.arange(n) * rate / new_rate, np.arange(len(waveform)), waveform).astype(np.float32)


class AudioFeatureExtractor(Protocol):
    """``extractor(waveform (samples,), sample_rate) -> (frames, dim)`` float32 at :data:`FEATURE_RATE`."""

    dim: int

    def __call__(self, waveform: np.ndarray, sample_rate: int) -> torch.Tensor: ...


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """HTK-mel triangular filters ``(n_mels, n_fft // 2 + 1)``."""

    def to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    points = to_hz(np.linspace(to_mel(np.array(0.0)), to_mel(np.array(sample_rate / 2)), n_mels + 2))
    lower, centre, upper = points[:-2, None], points[1:-1, None], points[2:, None]
    rise = (bins[None] - lower) / np.maximum(centre - lower, 1e-9)
    fall = (upper - bins[None]) / np.maximum(upper - centre, 1e-9)
    return torch.from_numpy(np.clip(np.minimum(rise, fall), 0, None).astype(np.float32))


class LogMelExtractor:
    """Log-mel features at 50 Hz: 16 kHz, hop 320, window 1024, ``dim`` mel bins, ``log(max(mel, 1e-5))``."""

    def __init__(
        self, dim: int = 80, sample_rate: int = 16000, hop_length: int = 320, n_fft: int = 1024
    ) -> None:
        if sample_rate / hop_length != FEATURE_RATE:
            raise InputError(
                f"log-mel hop must give 50 Hz: sample_rate / hop_length = {sample_rate}/{hop_length}"
            )
        self.dim, self.sample_rate, self.hop_length, self.n_fft = dim, sample_rate, hop_length, n_fft
        self.filters = mel_filterbank(dim, n_fft, sample_rate)

    def __call__(self, waveform: np.ndarray, sample_rate: int) -> torch.Tensor:
        wave = torch.from_numpy(resample(np.asarray(waveform, np.float32), sample_rate, self.sample_rate))
        frames = len(wave) // self.hop_length
        if frames < 1:
            raise InputError(
                f"audio too short: {len(wave)} samples at {self.sample_rate} Hz, need at least "
                f"{self.hop_length} (20 ms)"
            )
        spec = (
            torch.stft(
                wave,
                self.n_fft,
                self.hop_length,
                window=torch.hann_window(self.n_fft),
                center=True,
                return_complex=True,
            ).abs()
            ** 2
        )
        mel = self.filters @ spec[:, :frames]
        return torch.log(mel.clamp_min(1e-5)).T.contiguous()


class HubertExtractor:
    """HuBERT features (last hidden state) at 50 Hz from a local ``HubertModel`` folder; frozen."""

    def __init__(self, folder: str | Path, *, device: str | torch.device = "cpu") -> None:
        from transformers import HubertModel

        root = Path(folder)
        if not (root / "config.json").is_file():
            raise CheckpointError(
                f"HuBERT folder {str(root)!r} has no config.json; download facebook/hubert-large-ll60k "
                "(config.json + model.safetensors) and pass its local path"
            )
        self.model = (
            HubertModel.from_pretrained(root, local_files_only=True).to(device).eval().requires_grad_(False)
        )
        self.device = torch.device(device)
        self.dim = int(self.model.config.hidden_size)
        self.sample_rate = 16000

    @torch.no_grad()
    def __call__(self, waveform: np.ndarray, sample_rate: int) -> torch.Tensor:
        wave = resample(np.asarray(waveform, np.float32), sample_rate, self.sample_rate)
        frames = len(wave) // 320
        if len(wave) < 400:
            raise InputError(
                f"audio too short: {len(wave)} samples at 16 kHz, HuBERT needs at least 400 (25 ms)"
            )
        wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
        out = self.model(torch.from_numpy(wave)[None].to(self.device)).last_hidden_state[0].float().cpu()
        if out.shape[0] < frames:  # the conv front end drops the last partial window
            out = torch.cat([out, out[-1:].expand(frames - out.shape[0], -1)])
        return out[:frames]


def silent_features(features: torch.Tensor) -> torch.Tensor:
    """The "no audio" condition for ``features`` ``(..., C_a)``: zeros of the same shape.

    One definition for audio guidance's negative branch
    (:func:`flowstudio.avatar.inference.streaming.stream_latents`), training's audio dropout
    (``train.audio_dropout``) and ``benchmarks/avatar_audio_reliance.py``'s silence. Zeros rather than the
    extractor's output for a silent waveform because, for the toy's log-mel, that output is a constant
    row (``log 1e-5`` in every bin) and :class:`AudioConditioningModule` starts with a LayerNorm, which
    maps every constant row to the same point as zeros: the two are the same condition to the model
    (tested). For HuBERT a silent waveform is not constant; zeros are then a fixed null input, which is
    what audio dropout teaches as the unconditional branch.
    """
    return torch.zeros_like(features)


def make_extractor(config: AudioConfig, *, device: str | torch.device = "cpu") -> AudioFeatureExtractor:
    """The extractor a config names (HuBERT needs ``hubert_path``)."""
    if config.feature == "logmel":
        return LogMelExtractor(config.feature_dim)
    if not config.hubert_path:
        raise CheckpointError(
            "audio.feature is 'hubert' but audio.hubert_path is empty; set it to a local HuBERT-Large folder"
        )
    extractor = HubertExtractor(config.hubert_path, device=device)
    if extractor.dim != config.feature_dim:
        raise CheckpointError(
            f"HuBERT at {config.hubert_path} has hidden size {extractor.dim}, the config expects "
            f"audio.feature_dim={config.feature_dim}"
        )
    return extractor


class AudioConditioningModule(nn.Module):
    """Audio features -> per-block audio tokens for the video and structure towers.

    Args:
        feature_dim: feature channels ``C_a``; hidden_dim: MLP width; video_dim / struct_dim: tower widths;
        tokens_per_block: audio frames per latent frame (8 at 50 Hz / 6.25 Hz).
        paths / struct_trains_encoder: see :class:`~flowstudio.avatar.model.config.AudioConfig`.
    """

    def __init__(
        self,
        feature_dim: int,
        hidden_dim: int,
        video_dim: int,
        struct_dim: int,
        tokens_per_block: int,
        paths: str = "dual",
        struct_trains_encoder: bool = True,
    ):
        super().__init__()
        if paths not in ("dual", "video", "struct"):
            raise ValueError(f"audio paths must be 'dual', 'video' or 'struct', got {paths!r}")
        self.tokens_per_block = tokens_per_block
        self.paths = paths
        self.struct_trains_encoder = struct_trains_encoder
        self.norm = nn.LayerNorm(feature_dim)
        self.mlp = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim), nn.GELU(approximate="tanh"), nn.Linear(hidden_dim, hidden_dim)
        )
        self.position = nn.Parameter(torch.randn(tokens_per_block, hidden_dim) / math.sqrt(hidden_dim))
        self.null = nn.Parameter(torch.randn(1, 1, hidden_dim) / math.sqrt(hidden_dim))
        self.to_video = nn.Linear(hidden_dim, video_dim)
        self.to_struct = nn.Linear(hidden_dim, struct_dim)

    def forward(self, features: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``features`` ``(B, A, C_a)`` with block ids ``ids`` ``(A,)`` -> video/structure tokens
        ``(B, A, D_v)`` and ``(B, A, D_s)``. Rows of block 0 (sink) are replaced by the null token;
        every other block must hold whole groups of ``tokens_per_block`` frames."""
        hidden = self.mlp(self.norm(features))
        is_sink = (ids == SINK_BLOCK).to(hidden.device)
        slot = torch.cumsum((~is_sink).long(), 0) - 1
        hidden = hidden + self.position[slot.clamp_min(0) % self.tokens_per_block].to(hidden.dtype)
        null = self.null.to(hidden.dtype).expand_as(hidden)
        hidden = torch.where(is_sink[None, :, None], null, hidden)
        # single-path ablations: the deaf tower reads the null token in every row
        video = hidden if self.paths in ("dual", "video") else null
        struct = hidden if self.paths in ("dual", "struct") else null
        if not self.struct_trains_encoder:  # same values; the structure's gradient stops at to_struct
            struct = struct.detach()
        return self.to_video(video), self.to_struct(struct)
