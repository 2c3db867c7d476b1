"""Token-rate alignment between video latents, structure frames and audio features.

DualForce runs three streams on one clock::

    video frames      25 fps
    video latents     25 / 4  = 6.25 Hz   (the Wan VAE packs 4 frames into one latent frame)
    structure frames  25 Hz   (one LivePortrait motion latent per video frame)
    audio features    50 Hz   (HuBERT: 16 kHz / 320; MOVA's DAC: 48 kHz / 960; log-mel: hop 320)

The unit of time is the *latent frame*: latent frame ``j`` (0-based, counted after the reference
sink) covers ``[4 j / 25, 4 (j + 1) / 25)`` seconds = 160 ms, i.e. video frames ``4j .. 4j+3``,
structure frames ``4j .. 4j+3`` and audio feature frames ``8j .. 8j+7``. A chunk of ``n`` latent
frames therefore sees exactly its own 0.16 n s of every stream: no token of a chunk belongs to a
neighbour's time span. The ratios must be integers; :class:`TokenRates` checks it with exact
fractions.

(The Wan VAE encodes the very first frame alone; here that causal first latent is the reference
image, held as the attention sink, so every *generated* latent frame is a full group of 4 frames.)
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch

from flowstudio.avatar.model.config import RatesConfig
from flowstudio.errors import InputError


@dataclass(frozen=True)
class Span:
    """Half-open index ranges of one chunk in every stream, and its time span in seconds."""

    chunk: int
    latent: tuple[int, int]
    video_frames: tuple[int, int]
    struct: tuple[int, int]
    audio: tuple[int, int]
    seconds: tuple[Fraction, Fraction]


@dataclass(frozen=True)
class TokenRates:
    """Integer tokens-per-latent-frame of every stream, validated from :class:`RatesConfig`."""

    video_fps: Fraction
    latent_rate: Fraction
    frames_per_latent: int
    struct_per_latent: int
    audio_per_latent: int
    frames_per_chunk: int

    @classmethod
    def from_config(cls, rates: RatesConfig) -> TokenRates:
        fps = Fraction(rates.video_fps).limit_denominator(1001)
        latent_rate = fps / rates.vae_temporal_stride
        struct = Fraction(rates.struct_rate).limit_denominator(1001) / latent_rate
        audio = Fraction(rates.audio_rate).limit_denominator(1001) / latent_rate
        for label, ratio in (("structure", struct), ("audio", audio)):
            if ratio.denominator != 1 or ratio < 1:
                raise InputError(
                    f"{label} rate must be a whole multiple of the latent rate {float(latent_rate)} Hz "
                    f"(video_fps / vae_temporal_stride); got {float(ratio)} tokens per latent frame"
                )
        if rates.frames_per_chunk < 1:
            raise InputError(f"frames_per_chunk must be >= 1, got {rates.frames_per_chunk}")
        return cls(
            fps, latent_rate, rates.vae_temporal_stride, int(struct), int(audio), rates.frames_per_chunk
        )

    def span(self, chunk: int) -> Span:
        """Index ranges of chunk ``chunk`` (0-based, after the reference sink)."""
        a, b = chunk * self.frames_per_chunk, (chunk + 1) * self.frames_per_chunk
        return Span(
            chunk=chunk,
            latent=(a, b),
            video_frames=(a * self.frames_per_latent, b * self.frames_per_latent),
            struct=(a * self.struct_per_latent, b * self.struct_per_latent),
            audio=(a * self.audio_per_latent, b * self.audio_per_latent),
            seconds=(a / self.latent_rate, b / self.latent_rate),
        )

    def num_chunks(self, num_audio_frames: int) -> int:
        """Whole chunks covered by ``num_audio_frames`` feature frames (a partial tail is dropped)."""
        return num_audio_frames // (self.audio_per_latent * self.frames_per_chunk)

    def chunk_seconds(self) -> float:
        return float(self.frames_per_chunk / self.latent_rate)

    def window_shift(self, block: int, window: int | None) -> tuple[int, int]:
        """``(video, structure)`` positions by which block ``block``'s window is moved back in the
        streaming cache's window-relative layout.

        A query of block ``q`` sees blocks from ``max(1, q - window)`` on (besides the sink); they are
        laid out from position 1, as chunk 0 is in a training sequence, so everything moves back by
        the positions of the ``max(0, q - window - 1)`` chunks before them. ``window=None``: no shift.
        """
        gone = 0 if window is None else max(0, block - window - 1)
        frames = gone * self.frames_per_chunk
        return frames, frames * self.struct_per_latent


@dataclass(frozen=True)
class BlockLayout:
    """Block ids and temporal positions of every token source for chunks ``[first, last)``.

    Block 0 is the sink (reference frame, structure sink token, null audio token) at position 0;
    chunk ``c`` is block ``c + 1``. Latent frame ``j`` sits at video position ``1 + j``, structure
    frame ``s`` at structure position ``1 + s``; audio tokens carry no position (they are matched to
    their block by the cross-attention mask, and ordered within it by the conditioning module).

    Shapes: ``video_ids`` / ``video_pos`` ``(F,)``, ``struct_ids`` / ``struct_pos`` ``(S,)``,
    ``audio_ids`` ``(A,)``, all int64.
    """

    video_ids: torch.Tensor
    video_pos: torch.Tensor
    struct_ids: torch.Tensor
    struct_pos: torch.Tensor
    audio_ids: torch.Tensor

    @classmethod
    def build(cls, rates: TokenRates, first: int, last: int, *, sink: bool) -> BlockLayout:
        a, b = rates.span(first), rates.span(last - 1) if last > first else rates.span(first)
        latent = torch.arange(a.latent[0], b.latent[1]) if last > first else torch.zeros(0, dtype=torch.long)
        struct = torch.arange(a.struct[0], b.struct[1]) if last > first else torch.zeros(0, dtype=torch.long)
        audio = torch.arange(a.audio[0], b.audio[1]) if last > first else torch.zeros(0, dtype=torch.long)
        fpc = rates.frames_per_chunk
        parts = {
            "video_ids": 1 + latent // fpc,
            "video_pos": 1 + latent,
            "struct_ids": 1 + struct // (rates.struct_per_latent * fpc),
            "struct_pos": 1 + struct,
            "audio_ids": 1 + audio // (rates.audio_per_latent * fpc),
        }
        if sink:
            parts = {
                key: torch.cat([torch.zeros(1, dtype=torch.long), value]) for key, value in parts.items()
            }
        return cls(**parts)

    def struct_latent_index(self, struct_per_latent: int) -> torch.Tensor:
        """Video position (``0`` sink, ``1 + j`` latent frame ``j``) of each structure token, ``(S,)``."""
        return torch.where(self.struct_pos == 0, 0, 1 + (self.struct_pos - 1) // struct_per_latent)
