"""Steps 1 and 4: probe and filter an input video, then decode it to 25 fps frames and 16 kHz mono audio.

Probing reads only the container header (PyAV), so refused files cost milliseconds. Each refusal
has one reason, counted in the report:

=================  ==============================================================
``unreadable``     PyAV cannot open the file (corrupt header, not a video, empty)
``no_video``       no video stream
``no_audio``       no audio stream (a talking head needs its speech)
``too_small``      height or width below ``min_side``
``fps_out_of_range`` frame rate outside ``fps_range``
``too_short``      shorter than ``min_seconds`` (header, or frames actually decoded)
``too_long``       longer than ``max_seconds`` (videos are decoded whole into memory)
``undecodable``    decoding fails part-way (truncated or damaged data)
=================  ==============================================================

Frame-rate conversion picks, for each output time ``k / fps``, the decoded frame shown at that time
(nearest presentation time), so 30 fps input drops frames and 24 fps input repeats some; the source
frame number of every output frame is kept (the TalkingShapes ground truth is indexed by it).
Audio is resampled by PyAV (FFmpeg's swresample) to mono at ``sample_rate`` and aligned to the
first video frame's time (leading audio dropped, missing audio padded with silence).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from flowstudio.avatar.preprocess.config import PreprocessConfig


class Refused(Exception):
    """A clip (or a segment) is dropped for ``reason`` (a report key); ``detail`` says why."""

    def __init__(self, stage: str, reason: str, detail: str) -> None:
        super().__init__(f"{stage}/{reason}: {detail}")
        self.stage, self.reason, self.detail = stage, reason, detail


@dataclass
class Probe:
    width: int
    height: int
    fps: float
    seconds: float
    audio_rate: int
    info: dict = field(default_factory=dict)


@dataclass
class Decoded:
    """Frames at the output rate (``(T, H, W, 3)`` uint8, scaled to ``decode_max_side``), the source
    frame number of each, the source size, and mono float32 audio at ``sample_rate``."""

    frames: np.ndarray
    source_indices: np.ndarray
    source_size: tuple[int, int]
    audio: np.ndarray


def probe(path: Path, config: PreprocessConfig) -> Probe:
    """Read the header of ``path`` and apply the filters; raises :class:`Refused` with a reason."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise Refused("probe", "no_video", "the file has no video stream")
            if not container.streams.audio:
                raise Refused("probe", "no_audio", "the file has no audio stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 0.0
            if container.duration is not None:
                seconds = container.duration / av.time_base
            elif stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = float(stream.frames) / fps if stream.frames and fps else 0.0
            audio_rate = int(container.streams.audio[0].rate or 0)
    except av.FFmpegError as err:
        raise Refused("probe", "unreadable", f"PyAV cannot open it ({err})") from err
    if min(width, height) < config.min_side:
        raise Refused("probe", "too_small", f"{width}x{height} is below min_side {config.min_side}")
    low, high = config.fps_range
    if not low <= fps <= high:
        raise Refused("probe", "fps_out_of_range", f"{fps:.3f} fps is outside [{low}, {high}]")
    if seconds < config.min_seconds:
        raise Refused("probe", "too_short", f"{seconds:.2f} s is below min_seconds {config.min_seconds}")
    if seconds > config.max_seconds:
        raise Refused(
            "probe", "too_long", f"{seconds:.1f} s is above max_seconds {config.max_seconds}; cut it first"
        )
    return Probe(width, height, fps, seconds, audio_rate)


def _scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    # even sizes: yuv420p frames and the later crops stay aligned
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def decode(path: Path, config: PreprocessConfig) -> Decoded:
    """Decode video at ``config.fps`` (long side <= ``decode_max_side``) and audio at ``sample_rate``."""
    images: list[np.ndarray] = []
    times: list[float] = []
    chunks: list[np.ndarray] = []
    audio_start: float | None = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            source_size = (stream.codec_context.height, stream.codec_context.width)
            width, height = _scaled_size(source_size[1], source_size[0], config.decode_max_side)
            for frame in container.decode(stream):
                images.append(frame.reformat(width=width, height=height, format="rgb24").to_ndarray())
                times.append(float(frame.time) if frame.time is not None else len(times) / config.fps)
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=config.sample_rate)
            for frame in container.decode(container.streams.audio[0]):
                if audio_start is None and frame.time is not None:
                    audio_start = float(frame.time)
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.FFmpegError as err:
        raise Refused("decode", "undecodable", f"decoding failed after {len(images)} frames ({err})") from err
    if not images or not chunks:
        raise Refused(
            "decode", "undecodable", f"{len(images)} video frames, {len(chunks)} audio chunks decoded"
        )
    start = times[0]
    seconds = (
        len(images) / max(config.fps_range[0], 1e-6)
        if len(times) < 2
        else (times[-1] - start + (times[-1] - times[0]) / max(len(times) - 1, 1))
    )
    count = int(np.floor(seconds * config.fps + 1e-6))
    if count / config.fps < config.min_seconds:
        raise Refused("decode", "too_short", f"{count} frames at {config.fps} fps decoded")
    # the source frame on screen at each output time (nearest presentation time)
    rel = np.asarray(times) - start
    wanted = np.arange(count) / config.fps
    index = np.clip(np.searchsorted(rel, wanted + 0.5 / config.fps) - 1, 0, len(images) - 1)
    audio = np.concatenate(chunks).astype(np.float32)
    shift = int(round(((audio_start if audio_start is not None else start) - start) * config.sample_rate))
    audio = np.concatenate([np.zeros(shift, np.float32), audio]) if shift > 0 else audio[-shift:]
    need = int(round(count / config.fps * config.sample_rate))
    audio = np.pad(audio[:need], (0, max(0, need - len(audio))))
    frames = np.stack([images[i] for i in index])
    return Decoded(frames, index.astype(np.int64), source_size, audio)
