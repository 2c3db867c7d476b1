"""Steps 1 and 4: probe and filter an input video, then decode it to 25 fps frames and 16 kHz mono audio.

The probe and the video decode are :mod:`flowstudio.data.media`'s (shared with ``flowstudio data
build``; its docstring lists the refusal reasons); a talking head also needs its speech, so a file
without an audio stream is refused (``probe/no_audio``).

Audio is resampled by PyAV (FFmpeg's swresample) to mono at ``sample_rate`` and aligned to the
first video frame's time (leading audio dropped, missing audio padded with silence).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from flowstudio.avatar.preprocess.config import PreprocessConfig
from flowstudio.data.media import Probe, ProbeLimits, Refused, decode_video
from flowstudio.data.media import probe as probe_file

__all__ = ["Decoded", "Probe", "Refused", "decode", "probe"]


@dataclass
class Decoded:
    """Frames at the output rate (``(T, H, W, 3)`` uint8, scaled to ``decode_max_side``), the source
    frame number of each, the source size, and mono float32 audio at ``sample_rate``."""

    frames: np.ndarray
    source_indices: np.ndarray
    source_size: tuple[int, int]
    audio: np.ndarray


def _limits(config: PreprocessConfig) -> ProbeLimits:
    return ProbeLimits(
        min_side=config.min_side,
        fps_range=config.fps_range,
        min_seconds=config.min_seconds,
        max_seconds=config.max_seconds,
        require_audio=True,
    )


def probe(path: Path, config: PreprocessConfig) -> Probe:
    """Read the header of ``path`` and apply the filters; raises :class:`Refused` with a reason."""
    return probe_file(path, _limits(config))


def decode(path: Path, config: PreprocessConfig) -> Decoded:
    """Decode video at ``config.fps`` (long side <= ``decode_max_side``) and audio at ``sample_rate``."""
    video = decode_video(
        path, config.fps, config.decode_max_side, min_seconds=config.min_seconds, min_fps=config.fps_range[0]
    )
    chunks: list[np.ndarray] = []
    audio_start: float | None = None
    try:
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=config.sample_rate)
            for frame in container.decode(container.streams.audio[0]):
                if audio_start is None and frame.time is not None:
                    audio_start = float(frame.time)
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.FFmpegError as err:
        raise Refused("decode", "undecodable", f"audio decoding failed ({err})") from err
    if not chunks:
        raise Refused("decode", "undecodable", f"{len(video.frames)} video frames but no audio decoded")
    count = len(video.frames)
    audio = np.concatenate(chunks).astype(np.float32)
    start = video.start_time
    shift = int(round(((audio_start if audio_start is not None else start) - start) * config.sample_rate))
    audio = np.concatenate([np.zeros(shift, np.float32), audio]) if shift > 0 else audio[-shift:]
    need = int(round(count / config.fps * config.sample_rate))
    audio = np.pad(audio[:need], (0, max(0, need - len(audio))))
    return Decoded(video.frames, video.source_indices, video.source_size, audio)
