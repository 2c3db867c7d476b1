"""Probe and decode input videos with PyAV: the first stage of ``flowstudio data build`` and of
``flowstudio avatar preprocess``.

Probing reads only the container header, so refused files cost milliseconds. Each refusal has one
reason, counted in the run's report:

=====================  ==============================================================
``unreadable``         PyAV cannot open the file (corrupt header, not a video, empty)
``no_video``           no video stream
``no_audio``           no audio stream (only where audio is required: talking heads)
``too_small``          height or width below ``min_side``
``fps_out_of_range``   frame rate outside ``fps_range``
``too_short``          shorter than ``min_seconds`` (header, or frames actually decoded)
``too_long``           longer than ``max_seconds`` (videos are decoded whole into memory)
``undecodable``        decoding fails part-way (truncated or damaged data)
=====================  ==============================================================

Frame-rate conversion picks, for each output time ``k / fps``, the decoded frame shown at that time
(nearest presentation time), so 30 fps input drops frames and 24 fps input repeats some; the source
frame number of every output frame is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np


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


@dataclass(frozen=True)
class ProbeLimits:
    """What a probed file must satisfy (inclusive bounds)."""

    min_side: int
    fps_range: tuple[float, float]
    min_seconds: float
    max_seconds: float
    require_audio: bool = False


@dataclass
class DecodedVideo:
    """Frames at the output rate (``(T, H, W, 3)`` uint8, long side <= ``max_side``), the source frame
    number of each, the source size ``(height, width)``, and the first frame's time in seconds."""

    frames: np.ndarray
    source_indices: np.ndarray
    source_size: tuple[int, int]
    start_time: float


def probe(path: Path, limits: ProbeLimits) -> Probe:
    """Read the header of ``path`` and apply ``limits``; raises :class:`Refused` with a reason."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise Refused("probe", "no_video", "the file has no video stream")
            if limits.require_audio and not container.streams.audio:
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
            audio_rate = int(container.streams.audio[0].rate or 0) if container.streams.audio else 0
    except av.FFmpegError as err:
        raise Refused("probe", "unreadable", f"PyAV cannot open it ({err})") from err
    if min(width, height) < limits.min_side:
        raise Refused("probe", "too_small", f"{width}x{height} is below min_side {limits.min_side}")
    low, high = limits.fps_range
    if not low <= fps <= high:
        raise Refused("probe", "fps_out_of_range", f"{fps:.3f} fps is outside [{low}, {high}]")
    if seconds < limits.min_seconds:
        raise Refused("probe", "too_short", f"{seconds:.2f} s is below min_seconds {limits.min_seconds}")
    if seconds > limits.max_seconds:
        raise Refused(
            "probe", "too_long", f"{seconds:.1f} s is above max_seconds {limits.max_seconds}; cut it first"
        )
    return Probe(width, height, fps, seconds, audio_rate)


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` scaled down so that the long side is at most ``max_side``; even sizes."""
    scale = min(1.0, max_side / max(width, height))
    # even sizes: yuv420p frames and the later crops stay aligned
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def decode_video(
    path: Path, fps: float, max_side: int, *, min_seconds: float, min_fps: float
) -> DecodedVideo:
    """Decode the video stream at ``fps`` (long side <= ``max_side``).

    Raises:
        Refused: ``decode/undecodable`` (damaged data, no frame) or ``decode/too_short`` (fewer
            decoded frames than ``min_seconds`` needs; ``min_fps`` bounds the length of a
            one-frame file).
    """
    images: list[np.ndarray] = []
    times: list[float] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            source_size = (stream.codec_context.height, stream.codec_context.width)
            width, height = scaled_size(source_size[1], source_size[0], max_side)
            for frame in container.decode(stream):
                images.append(frame.reformat(width=width, height=height, format="rgb24").to_ndarray())
                times.append(float(frame.time) if frame.time is not None else len(times) / fps)
    except av.FFmpegError as err:
        raise Refused("decode", "undecodable", f"decoding failed after {len(images)} frames ({err})") from err
    if not images:
        raise Refused("decode", "undecodable", "no video frame decoded")
    start = times[0]
    seconds = (
        len(images) / max(min_fps, 1e-6)
        if len(times) < 2
        else (times[-1] - start + (times[-1] - times[0]) / max(len(times) - 1, 1))
    )
    count = int(np.floor(seconds * fps + 1e-6))
    if count / fps < min_seconds:
        raise Refused("decode", "too_short", f"{count} frames at {fps} fps decoded")
    # the source frame on screen at each output time (nearest presentation time)
    rel = np.asarray(times) - start
    wanted = np.arange(count) / fps
    index = np.clip(np.searchsorted(rel, wanted + 0.5 / fps) - 1, 0, len(images) - 1)
    frames = np.stack([images[i] for i in index])
    return DecodedVideo(frames, index.astype(np.int64), source_size, start)
