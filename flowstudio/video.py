"""Video I/O on PyAV, and shape normalisation for Wan2.2.

Frames at this boundary are uint8 numpy arrays shaped ``(frames, height, width, 3)``, RGB.
Tensors are ``(batch, channels, frames, height, width)`` floats in ``[-1, 1]``.

Wan2.2 wants a frame count of ``4k + 1`` (the VAE compresses time 4x and keeps the first frame
alone) and height/width that are multiples of 32 (16x spatial VAE times 2x2 patches).
:func:`normalize_clip` gets a clip there by a policy the caller chooses, and says what it did.

Reading::

    clip = read_video("in.mp4")                    # VideoClip(frames, fps, path, audio=None)
    clip = read_video("frames/", fps=24)           # a folder of png/jpg, natural name order
    frames, report = normalize_clip(clip.frames, frame_policy="trim", size_policy="resize")
    write_video("out.mp4", frames, clip.fps)
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import re
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import av
import cv2
import numpy as np

from flowstudio.errors import InputError, VideoError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
WRITE_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
DEFAULT_FOLDER_FPS = 16.0
# Sample rates FFmpeg's native AAC encoder accepts; anything else is resampled to 48 kHz.
AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_AAC_FRAME_SIZE = 1024
_REENCODE_HINT = "re-encode it to H.264 mp4, e.g. `ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4`"

FramePolicy = Literal["trim", "pad", "resample"]
SizePolicy = Literal["crop", "pad", "resize"]
PadMode = Literal["edge", "reflect", "constant"]
RoundMode = Literal["down", "up", "nearest"]
_FRAME_ROUNDING: dict[str, RoundMode] = {"trim": "down", "pad": "up", "resample": "nearest"}


@dataclass(eq=False)
class VideoClip:
    """A decoded clip.

    Attributes:
        frames: uint8 ``(frames, height, width, 3)`` RGB.
        fps: frames per second.
        path: where it was read from (``None`` when built in memory).
        audio: float32 ``(channels, samples)`` in ``[-1, 1]``, or ``None`` when not read or absent.
        audio_rate: sample rate of ``audio`` in Hz, or ``None``.
    """

    frames: np.ndarray
    fps: float
    path: Path | None = None
    audio: np.ndarray | None = None
    audio_rate: int | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        """Length in seconds, ``num_frames / fps``."""
        return self.num_frames / self.fps


# --------------------------------------------------------------------------------------------
# Reading


def read_video(
    path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    max_frames: int | None = None,
    with_audio: bool = False,
    autorotate: bool = True,
) -> VideoClip:
    """Decode a video file (mp4, mov, webm, gif, ...) or a folder of images into a :class:`VideoClip`.

    Args:
        path: a video file, or a folder of ``.png``/``.jpg`` images read in natural name order
            (``frame_2`` before ``frame_10``).
        fps: frame rate for an image folder (default 16). For a video file it replaces the rate
            the container reports; frames are not resampled.
        max_frames: decode at most this many frames from the start.
        with_audio: also decode the first audio stream (video files only) into ``clip.audio``,
            float32 ``(channels, samples)``; with ``max_frames`` it is cut to the span of those frames.
        autorotate: turn frames upright according to the stream's display rotation (phone videos).

    Raises:
        VideoError: the path is missing, empty, corrupt, unsupported, or holds no frames.
        InputError: ``fps`` or ``max_frames`` is not a positive number.
    """
    path = Path(path)
    if fps is not None and (
        isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not (math.isfinite(fps) and fps > 0)
    ):
        raise InputError(f"fps must be a positive number, got {fps!r}")
    if max_frames is not None and (
        isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1
    ):
        raise InputError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder; check the path (cwd is {Path.cwd()})")
    if path.is_dir():
        if with_audio:
            logger.info("%s is an image folder: it has no audio", path)
        return _read_image_folder(path, fps=DEFAULT_FOLDER_FPS if fps is None else fps, max_frames=max_frames)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise VideoError(
            f"{path}: unsupported file type {suffix or '(no extension)'!r}; read_video takes "
            f"{', '.join(VIDEO_SUFFIXES)} files or a folder of {'/'.join(IMAGE_SUFFIXES)} images"
        )
    if path.stat().st_size == 0:
        raise VideoError(
            f"{path}: file is empty (0 bytes); the write that made it probably failed, produce the file again"
        )
    frames, stream_fps = _decode_video(path, max_frames=max_frames, autorotate=autorotate)
    clip = VideoClip(frames=frames, fps=stream_fps if fps is None else float(fps), path=path)
    if with_audio:
        audio = _decode_audio(path)
        if audio is not None:
            samples, rate = audio
            if max_frames is not None:
                samples = samples[:, : round(clip.duration * rate)]
            clip.audio, clip.audio_rate = samples, rate
    logger.debug(
        "read %s: %d frames %dx%d at %.3f fps", path, clip.num_frames, clip.height, clip.width, clip.fps
    )
    return clip


def _open_input(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise VideoError(f"{path}: file is not a video PyAV can decode ({err}); {_REENCODE_HINT}") from err


def _decode_video(path: Path, *, max_frames: int | None, autorotate: bool) -> tuple[np.ndarray, float]:
    """Decode the first video stream to uint8 ``(T, H, W, 3)`` and its frame rate."""
    with _open_input(path) as container:
        if not container.streams.video:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise VideoError(f"{path}: file has no video stream (streams found: {kinds}); pass a video file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                image = frame.to_ndarray(format="rgb24")
                if autorotate and frame.rotation % 360:
                    image = np.rot90(image, k=round(frame.rotation / 90))
                frames.append(np.ascontiguousarray(image))
                if max_frames is not None and len(frames) >= max_frames:
                    break
        except av.FFmpegError as err:
            raise VideoError(
                f"{path}: decoding failed after {len(frames)} frame(s) ({err}); the file is corrupt or "
                f"truncated, {_REENCODE_HINT}"
            ) from err
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not frames:
        raise VideoError(
            f"{path}: video stream holds zero decodable frames (empty or truncated file); "
            f"produce it again or {_REENCODE_HINT}"
        )
    if len({f.shape for f in frames}) > 1:
        raise VideoError(
            f"{path}: frame size changes mid-stream ({frames[0].shape} then others); {_REENCODE_HINT}"
        )
    if not rate:
        logger.warning("%s reports no frame rate; assuming %g fps", path, DEFAULT_FOLDER_FPS)
    return np.stack(frames), float(rate) if rate else DEFAULT_FOLDER_FPS


def _decode_audio(path: Path) -> tuple[np.ndarray, int] | None:
    """Decode the first audio stream to float32 ``(channels, samples)``; ``None`` if there is none."""
    with _open_input(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")  # keep layout and rate, planar float
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
        except av.FFmpegError as err:
            raise VideoError(
                f"{path}: audio decoding failed ({err}); read it with with_audio=False or {_REENCODE_HINT}"
            ) from err
        rate = int(stream.rate)
    if not chunks:
        return None
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), rate


def _natural_key(name: str) -> list[int | str]:
    """Sort key for natural order: ``frame_2`` before ``frame_10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _read_image_folder(folder: Path, *, fps: float, max_frames: int | None) -> VideoClip:
    from PIL import Image, UnidentifiedImageError

    files = sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        ),
        key=lambda p: _natural_key(p.name),
    )
    if not files:
        raise VideoError(
            f"{folder}: folder holds no images ({'/'.join(IMAGE_SUFFIXES)}); put the frames "
            "there as frame_0001.png, frame_0002.png, ... or pass a video file"
        )
    files = files[:max_frames] if max_frames is not None else files
    frames: list[np.ndarray] = []
    for file in files:
        try:
            with Image.open(file) as image:
                frames.append(np.asarray(image.convert("RGB")))
        except (OSError, UnidentifiedImageError) as err:
            raise VideoError(f"{file}: image cannot be read ({err}); replace or remove it") from err
        if frames[-1].shape != frames[0].shape:
            raise VideoError(
                f"{file}: image is {frames[-1].shape[1]}x{frames[-1].shape[0]} (WxH) but {files[0].name} is "
                f"{frames[0].shape[1]}x{frames[0].shape[0]}; all frames of a folder must share one size"
            )
    return VideoClip(frames=np.stack(frames), fps=float(fps), path=folder)


def read_image(path: str | os.PathLike[str], *, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read one image as uint8 ``(H, W, 3)`` RGB; ``size=(height, width)`` resizes it (area filter).

    Used for TI2V first frames and editing target frames. Missing or unreadable files raise
    :class:`VideoError` naming the path.
    """
    from PIL import Image, UnidentifiedImageError

    file = Path(path)
    if not file.is_file():
        raise VideoError(f"{file}: image not found; check the path")
    try:
        with Image.open(file) as image:
            frame = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as err:
        raise VideoError(f"{file}: image cannot be read ({err}); save it as PNG or JPEG") from err
    if size is not None and frame.shape[:2] != tuple(size):
        frame = _resize(frame[None], size[0], size[1])[0]
    return np.ascontiguousarray(frame)


# --------------------------------------------------------------------------------------------
# Writing


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    audio_rate: int | None = None,
    crf: int = 18,
    *,
    preset: str = "medium",
    odd_size: Literal["pad", "crop", "error"] = "pad",
) -> Path:
    """Encode frames to an H.264 (libx264, yuv420p) mp4, with AAC audio when given.

    The file is written to a temporary name in the same folder and moved into place with
    :func:`os.replace`, so a failure leaves any existing file at ``path`` untouched and no
    partial output behind.

    Args:
        path: output file, ``.mp4`` (also ``.m4v``/``.mov``). Missing parent folders are created.
        frames: uint8 ``(frames, height, width, 3)`` RGB.
        fps: frame rate; fractional rates such as 29.97 are kept exactly as 30000/1001.
        audio: float ``(samples,)`` or ``(channels, samples)`` in ``[-1, 1]``, 1 or 2 channels.
        audio_rate: sample rate of ``audio`` in Hz; required with ``audio``. Rates AAC does not
            support are resampled to 48 kHz.
        crf: x264 constant rate factor, 0 (best) to 51 (worst); 18 is visually near-lossless.
        preset: x264 speed/size preset (``ultrafast`` ... ``veryslow``).
        odd_size: yuv420p needs even height and width. ``"pad"`` repeats the last row/column,
            ``"crop"`` drops it, ``"error"`` raises. Either fix is logged as a warning.

    Returns:
        The path written.

    Raises:
        InputError: frames, fps, audio or an option is invalid.
        VideoError: encoding or writing the file failed.
    """
    path = Path(path)
    container_format = WRITE_SUFFIXES.get(path.suffix.lower())
    if container_format is None:
        raise InputError(
            f"write_video writes H.264 {'/'.join(WRITE_SUFFIXES)} files; got path "
            f"{str(path)!r}, change its extension to .mp4"
        )
    _check_frames(frames, "frames")
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not (math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive number, got {fps!r}")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise InputError(f"crf must be an integer from 0 to 51 (x264 quality, lower is better), got {crf!r}")
    frames = _even_size(frames, odd_size)
    audio_data = _check_audio(audio, audio_rate) if audio is not None else None
    if audio is None and audio_rate is not None:
        logger.warning("audio_rate=%s given without audio; writing a silent video", audio_rate)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        _encode(tmp, container_format, frames, fps, audio_data, crf=crf, preset=preset)
        os.replace(tmp, path)
    except av.FFmpegError as err:
        raise VideoError(
            f"{path}: encoding failed ({err}); nothing was written, existing file kept. "
            "Check that the folder is writable and has free space"
        ) from err
    except OSError as err:
        raise VideoError(
            f"{path}: writing failed ({err}); nothing was written, existing file kept. "
            "Check that the folder is writable and has free space"
        ) from err
    finally:
        tmp.unlink(missing_ok=True)
    logger.debug(
        "wrote %s: %d frames %dx%d at %g fps%s",
        path,
        *frames.shape[:3],
        float(fps),
        "" if audio_data is None else " with audio",
    )
    return path


def _rgb_frame(image: np.ndarray, index: int) -> av.VideoFrame:
    """One encoder input frame with its presentation time (in units of 1/fps)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    frame.pts = index
    return frame


def _encode(
    tmp: Path,
    container_format: str,
    frames: np.ndarray,
    fps: float,
    audio: tuple[np.ndarray, int] | None,
    *,
    crf: int,
    preset: str,
) -> None:
    rate = Fraction(fps).limit_denominator(1001)
    # bitexact: no wall-clock creation time in the header, so the same frames give the same bytes
    options = {"movflags": "+faststart", "fflags": "+bitexact"}
    with av.open(str(tmp), mode="w", format=container_format, options=options) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        # a fixed x264 thread count: by default x264 sizes its threads by the CPUs it may use, and the
        # bytes (and decoded pixels) then depend on the machine; a fixed 4 stays parallel everywhere
        stream.options = {"crf": str(crf), "preset": preset, "threads": "4"}
        audio_stream = None
        if audio is not None:
            samples, sample_rate = audio
            layout = "mono" if samples.shape[0] == 1 else "stereo"
            audio_stream = container.add_stream("aac", rate=sample_rate, layout=layout)
        for index, image in enumerate(frames):
            container.mux(stream.encode(_rgb_frame(image, index)))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            for frame in _aac_frames(samples, sample_rate, layout):
                container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode(None))


def _aac_frames(samples: np.ndarray, sample_rate: int, layout: str) -> list[av.AudioFrame]:
    """Split planar float audio into the 1024-sample frames the AAC encoder takes."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
    frame.sample_rate = sample_rate
    frame.pts, frame.time_base = 0, Fraction(1, sample_rate)
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate, frame_size=_AAC_FRAME_SIZE)
    out = resampler.resample(frame) + resampler.resample(None)
    start = 0
    for chunk in out:  # explicit timestamps: audio starts with the video at t = 0
        chunk.pts, chunk.time_base = start, Fraction(1, sample_rate)
        start += chunk.samples
    return out


def _check_frames(frames: object, name: str) -> None:
    if not isinstance(frames, np.ndarray):
        is_tensor = type(frames).__name__ == "Tensor"
        hint = " (a torch tensor? convert it with tensor_to_frames)" if is_tensor else ""
        raise InputError(
            f"{name} must be a numpy uint8 array (frames, height, width, 3), got "
            f"{type(frames).__name__}{hint}"
        )
    if frames.ndim != 4 or frames.shape[3] != 3 or min(frames.shape[:3]) < 1:
        raise InputError(
            f"{name} must be shaped (frames, height, width, 3) RGB with at least one frame, "
            f"got shape {frames.shape}"
        )
    if frames.dtype != np.uint8:
        hint = " (floats in [-1, 1] from a model? use tensor_to_frames)" if frames.dtype.kind == "f" else ""
        raise InputError(f"{name} must have dtype uint8 (0..255), got {frames.dtype}{hint}")


def _even_size(frames: np.ndarray, odd_size: str) -> np.ndarray:
    """Make height and width even, as yuv420p chroma subsampling requires."""
    if odd_size not in ("pad", "crop", "error"):
        raise InputError(f"odd_size must be 'pad', 'crop' or 'error', got {odd_size!r}")
    height, width = frames.shape[1:3]
    if height % 2 == 0 and width % 2 == 0:
        return frames
    if odd_size == "error":
        raise InputError(
            f"H.264 yuv420p needs even height and width, got {height}x{width} (HxW); pass "
            "odd_size='pad' or 'crop', or normalize_clip the frames first"
        )
    if odd_size == "crop" and min(height, width) < 2:
        raise InputError(f"cannot crop a {height}x{width} (HxW) clip to even size; use odd_size='pad'")
    if odd_size == "pad":
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    else:
        frames = frames[:, : height - height % 2, : width - width % 2]
    logger.warning(
        "odd size %dx%d (HxW) made even for yuv420p by %s: now %dx%d",
        height,
        width,
        "padding" if odd_size == "pad" else "cropping",
        *frames.shape[1:3],
    )
    return frames


def _check_audio(audio: object, audio_rate: int | None) -> tuple[np.ndarray, int]:
    """Validate audio and return it as float32 ``(channels, samples)`` at an AAC sample rate."""
    if not isinstance(audio, np.ndarray) or audio.dtype.kind != "f":
        dtype = getattr(audio, "dtype", type(audio).__name__)
        raise InputError(
            f"audio must be a float numpy array in [-1, 1], shaped (samples,) or (channels, "
            f"samples), got {dtype}; convert int16 PCM with `pcm / 32768.0`"
        )
    if isinstance(audio_rate, bool) or not isinstance(audio_rate, int | np.integer) or audio_rate <= 0:
        raise InputError(
            f"audio_rate must be the sample rate of audio in Hz (a positive int), got {audio_rate!r}"
        )
    samples = audio[None] if audio.ndim == 1 else audio
    if samples.ndim != 2 or samples.shape[1] == 0:
        raise InputError(
            f"audio must be shaped (samples,) or (channels, samples) with samples > 0, "
            f"got shape {audio.shape}"
        )
    if samples.shape[0] not in (1, 2):
        hint = "; it looks like (samples, channels): pass audio.T" if samples.shape[1] in (1, 2) else ""
        raise InputError(f"audio must have 1 (mono) or 2 (stereo) channels, got shape {audio.shape}{hint}")
    samples = samples.astype(np.float32)
    if not np.isfinite(samples).all():
        raise InputError("audio holds NaN or infinite values")
    peak = float(np.abs(samples).max())
    if peak > 1.0:
        logger.warning("audio peaks at %.3f, outside [-1, 1]; clipping", peak)
        samples = np.clip(samples, -1.0, 1.0)
    rate = int(audio_rate)
    if rate not in AAC_SAMPLE_RATES:
        samples, rate = _resample_audio(samples, rate, 48000), 48000
    return samples, rate


def _resample_audio(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    logger.info("AAC does not take %d Hz audio; resampling to %d Hz", rate, new_rate)
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=new_rate)
    out = resampler.resample(frame) + resampler.resample(None)
    return np.concatenate([f.to_ndarray() for f in out], axis=1)


# --------------------------------------------------------------------------------------------
# Normalisation to Wan2.2 shapes


def is_valid_frame_count(n: int, frame_multiple: int = 4) -> bool:
    """True when ``n = frame_multiple * k + 1`` for some ``k >= 0`` (1, 5, 9, 13, 17, ...)."""
    return n >= 1 and (n - 1) % frame_multiple == 0


def nearest_valid_frame_count(n: int, mode: RoundMode = "nearest", frame_multiple: int = 4) -> int:
    """The valid count ``frame_multiple * k + 1`` at or below (``"down"``), at or above (``"up"``),
    or closest to (``"nearest"``, ties go up so no frame is lost) ``n >= 1``."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise InputError(f"frame count must be a positive integer, got {n!r}")
    if frame_multiple < 1:
        raise InputError(f"frame_multiple must be a positive integer, got {frame_multiple!r}")
    down = (int(n) - 1) // frame_multiple * frame_multiple + 1
    up = down if down == n else down + frame_multiple
    if mode == "down":
        return down
    if mode == "up":
        return up
    if mode == "nearest":
        return down if n - down < up - n else up
    raise InputError(f"mode must be 'down', 'up' or 'nearest', got {mode!r}")


@dataclass(frozen=True)
class NormalizeReport:
    """What :func:`normalize_clip` did. Shapes are ``(frames, height, width)``.

    Attributes:
        original_shape: shape before.
        shape: shape after.
        frame_policy: ``"trim"``, ``"pad"`` or ``"resample"``.
        size_policy: ``"crop"``, ``"pad"`` or ``"resize"``.
        frame_indices: for each output frame, the index of the input frame it came from.
        pad: pixels added ``(top, bottom, left, right)``; :func:`undo_padding` removes them.
        crop: pixels removed ``(top, bottom, left, right)``.
        pad_mode: how padded pixels were filled (``"edge"``, ``"reflect"`` or ``"constant"``).
    """

    original_shape: tuple[int, int, int]
    shape: tuple[int, int, int]
    frame_policy: str
    size_policy: str
    frame_indices: tuple[int, ...]
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    pad_mode: str = "edge"

    @property
    def frames_changed(self) -> bool:
        return self.frame_indices != tuple(range(self.original_shape[0]))

    @property
    def size_changed(self) -> bool:
        return self.shape[1:] != self.original_shape[1:]

    @property
    def changed(self) -> bool:
        """True when the clip was altered in any way."""
        return self.frames_changed or self.size_changed

    def adjusted_fps(self, fps: float) -> float:
        """Frame rate that keeps the clip's duration after a ``"resample"``; ``fps`` otherwise."""
        old, new = self.original_shape[0], self.shape[0]
        if self.frame_policy != "resample" or old == new:
            return fps
        return fps * new / old

    def describe(self) -> str:
        """One line, e.g. ``frames 18 -> 17 (trim 1 trailing frame); size 130x250 -> 128x256 (resize)``.

        Sizes are height x width.
        """
        (t0, h0, w0), (t1, h1, w1) = self.original_shape, self.shape
        if not self.frames_changed:
            frames = f"frames {t0} (unchanged)"
        elif self.frame_policy == "trim":
            dropped = t0 - t1
            frames = f"frames {t0} -> {t1} (trim {dropped} trailing frame{'s' * (dropped != 1)})"
        elif self.frame_policy == "pad":
            added = t1 - t0
            frames = f"frames {t0} -> {t1} (pad: repeat last frame {added} time{'s' * (added != 1)})"
        else:
            frames = f"frames {t0} -> {t1} (resample, nearest frame)"
        if not self.size_changed:
            size = f"size {h0}x{w0} (unchanged)"
        elif self.size_policy == "pad":
            size = f"size {h0}x{w0} -> {h1}x{w1} (pad {self.pad_mode}: {_sides(self.pad)})"
        elif self.size_policy == "crop":
            size = f"size {h0}x{w0} -> {h1}x{w1} (center crop: {_sides(self.crop)})"
        else:
            size = f"size {h0}x{w0} -> {h1}x{w1} (resize)"
        return f"{frames}; {size}"


def _sides(amounts: tuple[int, int, int, int]) -> str:
    return ", ".join(
        f"{name} {value}" for name, value in zip(("top", "bottom", "left", "right"), amounts, strict=True)
    )


def normalize_clip(
    frames: np.ndarray,
    *,
    frame_policy: FramePolicy,
    size_policy: SizePolicy,
    multiple: int = 32,
    frame_multiple: int = 4,
    target_size: tuple[int, int] | None = None,
    target_frames: int | None = None,
    pad_mode: PadMode = "edge",
    pad_value: int = 0,
) -> tuple[np.ndarray, NormalizeReport]:
    """Bring a clip to ``frame_multiple * k + 1`` frames and sizes that are multiples of ``multiple``.

    Frame policies (count ``n`` goes to a valid count):
        ``"trim"`` drop trailing frames down to the valid count at or below ``n``; a short clip that
        this would cut to its first frame alone (2 to ``frame_multiple`` frames) is padded up as by
        ``"pad"`` instead, and the report says ``"pad"``;
        ``"pad"`` repeat the last frame up to the valid count at or above ``n``;
        ``"resample"`` nearest-frame resample, keeping first and last frame, to the nearest valid
        count (ties go up). The clip keeps its duration at ``report.adjusted_fps(fps)``.

    Size policies (each of height and width):
        ``"crop"`` center crop down to a multiple (the side must be at least ``multiple``);
        ``"pad"`` center pad up to a multiple with ``pad_mode`` (``"edge"``, ``"reflect"``, or
        ``"constant"`` with ``pad_value``), undone exactly by :func:`undo_padding`;
        ``"resize"`` ``cv2.INTER_AREA`` to the nearest multiple, at least ``multiple``.

    ``target_frames`` and ``target_size`` (height, width) ask for exact values instead; they must be
    valid themselves, and reachable by the policy (trim/crop only shrink, pad only grows).
    A clip that is already valid is returned as is (not copied) with ``report.changed == False``.

    Args:
        frames: ``(frames, height, width, channels)`` or ``(frames, height, width)``, uint8 for video.

    Returns:
        The new frames and a :class:`NormalizeReport`.
    """
    _check_normalize_args(frames, frame_policy, size_policy, multiple, frame_multiple, pad_mode)
    t0, h0, w0 = (int(v) for v in frames.shape[:3])

    # 1. Time.
    new_t = _target_frame_count(t0, frame_policy, frame_multiple, target_frames)
    if frame_policy == "trim" and target_frames is None and new_t == 1 < t0:
        # Trimming 2..frame_multiple frames would keep only the first one: pad up instead.
        new_t = nearest_valid_frame_count(t0, "up", frame_multiple)
        frame_policy = "pad"
        logger.info(
            "a %d-frame clip is padded to %d frames (repeating the last one) instead of trimmed "
            "to 1, which would drop all its motion",
            t0,
            new_t,
        )
    indices = _frame_indices(t0, new_t, frame_policy)
    if indices != tuple(range(t0)):
        frames = frames[np.asarray(indices)]

    # 2. Space.
    new_h, new_w = _target_size(h0, w0, size_policy, multiple, target_size)
    pad = crop = (0, 0, 0, 0)
    if (new_h, new_w) != (h0, w0):
        if size_policy == "crop":
            crop = _split(h0 - new_h) + _split(w0 - new_w)
            frames = frames[:, crop[0] : crop[0] + new_h, crop[2] : crop[2] + new_w]
        elif size_policy == "pad":
            pad = _split(new_h - h0) + _split(new_w - w0)
            widths = [(0, 0), pad[:2], pad[2:]] + [(0, 0)] * (frames.ndim - 3)
            if pad_mode == "constant":
                frames = np.pad(frames, widths, mode="constant", constant_values=pad_value)
            else:
                frames = np.pad(frames, widths, mode=pad_mode)
        else:
            frames = _resize(frames, new_h, new_w)

    report = NormalizeReport(
        original_shape=(t0, h0, w0),
        shape=(int(frames.shape[0]), new_h, new_w),
        frame_policy=frame_policy,
        size_policy=size_policy,
        frame_indices=indices,
        pad=pad,
        crop=crop,
        pad_mode=pad_mode,
    )
    if report.changed:
        logger.info("normalized clip: %s", report.describe())
    return frames, report


def undo_padding(frames: np.ndarray, report: NormalizeReport, *, trim_frames: bool = True) -> np.ndarray:
    """Crop away the padding :func:`normalize_clip` added, giving back the original size exactly.

    Spatial padding (``size_policy="pad"``) is always removed. With ``trim_frames``, frames added by
    ``frame_policy="pad"`` are dropped too. Other policies have nothing to undo in that dimension.

    Args:
        frames: ``(frames, height, width[, channels])`` at the size ``normalize_clip`` returned,
            for example the output of a model run on the padded clip.
        report: the report ``normalize_clip`` returned.
    """
    if not isinstance(frames, np.ndarray) or frames.ndim not in (3, 4):
        raise InputError(
            f"frames must be a numpy array (frames, height, width[, channels]), got "
            f"{getattr(frames, 'shape', type(frames).__name__)}"
        )
    if tuple(frames.shape[1:3]) != report.shape[1:]:
        raise InputError(
            f"frames are {frames.shape[1]}x{frames.shape[2]} (HxW) but the report is for "
            f"{report.shape[1]}x{report.shape[2]}; pass the report of the clip these frames "
            "came from"
        )
    top, bottom, left, right = report.pad
    height, width = frames.shape[1:3]
    frames = frames[:, top : height - bottom, left : width - right]
    if trim_frames and report.frame_policy == "pad" and report.frames_changed:
        if frames.shape[0] != report.shape[0]:
            raise InputError(
                f"frames hold {frames.shape[0]} frames but the padded clip had "
                f"{report.shape[0]}; pass trim_frames=False to keep the frame count"
            )
        frames = frames[: report.original_shape[0]]
    return np.ascontiguousarray(frames)


def _check_normalize_args(
    frames: object, frame_policy: str, size_policy: str, multiple: int, frame_multiple: int, pad_mode: str
) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim not in (3, 4) or min(frames.shape[:3]) < 1:
        raise InputError(
            f"frames must be a non-empty numpy array (frames, height, width[, channels]), got "
            f"{getattr(frames, 'shape', type(frames).__name__)}"
        )
    if frame_policy not in ("trim", "pad", "resample"):
        raise InputError(f"frame_policy must be 'trim', 'pad' or 'resample', got {frame_policy!r}")
    if size_policy not in ("crop", "pad", "resize"):
        raise InputError(f"size_policy must be 'crop', 'pad' or 'resize', got {size_policy!r}")
    if pad_mode not in ("edge", "reflect", "constant"):
        raise InputError(f"pad_mode must be 'edge', 'reflect' or 'constant', got {pad_mode!r}")
    for name, value in (("multiple", multiple), ("frame_multiple", frame_multiple)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if size_policy == "resize" and frames.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise InputError(f"size_policy='resize' works on uint8, uint16 or float arrays, got {frames.dtype}")


def _target_frame_count(n: int, policy: str, frame_multiple: int, target: int | None) -> int:
    if target is None:
        return nearest_valid_frame_count(n, _FRAME_ROUNDING[policy], frame_multiple)
    is_int = isinstance(target, int) and not isinstance(target, bool)
    if not (is_int and is_valid_frame_count(target, frame_multiple)):
        example = (
            nearest_valid_frame_count(target, "nearest", frame_multiple)
            if (is_int and target >= 1)
            else 1 + frame_multiple * 4
        )
        raise InputError(f"target_frames must be {frame_multiple}k+1 (e.g. {example}), got {target!r}")
    if policy == "trim" and target > n:
        raise InputError(
            f"frame_policy='trim' cannot grow {n} frames to target_frames={target}; use 'pad' or 'resample'"
        )
    if policy == "pad" and target < n:
        raise InputError(
            f"frame_policy='pad' cannot shrink {n} frames to target_frames={target}; use 'trim' or 'resample'"
        )
    return target


def _frame_indices(n: int, new_n: int, policy: str) -> tuple[int, ...]:
    """Source index of every output frame."""
    if policy == "resample" and new_n != n:
        if new_n == 1:
            return (0,)
        # Nearest source frame on a grid that keeps the first and last frame.
        return tuple(int(i) for i in np.floor(np.arange(new_n) * (n - 1) / (new_n - 1) + 0.5))
    return tuple(min(i, n - 1) for i in range(new_n))  # trim: prefix; pad: repeat the last frame


def _target_size(
    height: int, width: int, policy: str, multiple: int, target: tuple[int, int] | None
) -> tuple[int, int]:
    if target is None:
        if policy == "crop":
            if min(height, width) < multiple:
                raise InputError(
                    f"size_policy='crop' cannot crop a {height}x{width} (HxW) clip to a "
                    f"multiple of {multiple}: a side is smaller than {multiple}; "
                    "use 'pad' or 'resize'"
                )
            return height // multiple * multiple, width // multiple * multiple
        if policy == "pad":
            return -(-height // multiple) * multiple, -(-width // multiple) * multiple
        return (
            max(multiple, math.floor(height / multiple + 0.5) * multiple),
            max(multiple, math.floor(width / multiple + 0.5) * multiple),
        )
    if len(target) != 2 or any(
        isinstance(s, bool) or not isinstance(s, int) or s < multiple or s % multiple for s in target
    ):
        raise InputError(
            f"target_size must be (height, width), positive multiples of {multiple}, got {target!r}"
        )
    new_h, new_w = target
    if policy == "crop" and (new_h > height or new_w > width):
        raise InputError(
            f"size_policy='crop' cannot grow {height}x{width} to target_size "
            f"{new_h}x{new_w} (HxW); use 'pad' or 'resize'"
        )
    if policy == "pad" and (new_h < height or new_w < width):
        raise InputError(
            f"size_policy='pad' cannot shrink {height}x{width} to target_size "
            f"{new_h}x{new_w} (HxW); use 'crop' or 'resize'"
        )
    return new_h, new_w


def _split(total: int) -> tuple[int, int]:
    """Split ``total`` pixels between the two sides, the extra one going to the end."""
    return total // 2, total - total // 2


def _resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """``cv2.INTER_AREA`` resize of every frame (OpenCV falls back to bilinear when enlarging)."""
    out = np.empty((frames.shape[0], height, width, *frames.shape[3:]), dtype=frames.dtype)
    for i, image in enumerate(frames):
        out[i] = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA).reshape(out.shape[1:])
    return out


# --------------------------------------------------------------------------------------------
# Frames <-> tensors


def frames_to_tensor(
    frames: np.ndarray,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` frames to a ``(1, 3, T, H, W)`` tensor in ``[-1, 1]`` (``x / 127.5 - 1``).

    ``dtype`` defaults to float32; the scaling is done in float32 before the cast.
    """
    import torch

    _check_frames(frames, "frames")
    # a read-only array (a decoded or memory-mapped clip) is copied: torch warns on non-writable memory
    tensor = torch.from_numpy(np.require(frames, requirements=["C", "W"])).to(device=device)
    tensor = tensor.permute(3, 0, 1, 2).unsqueeze(0).to(torch.float32) / 127.5 - 1.0
    return tensor.to(dtype or torch.float32)


def tensor_to_frames(tensor: torch.Tensor) -> np.ndarray:
    """A ``(1, 3, T, H, W)`` or ``(3, T, H, W)`` tensor in ``[-1, 1]`` to uint8 ``(T, H, W, 3)`` frames.

    Values are mapped by ``(x + 1) * 127.5``, rounded and clamped to ``[0, 255]``; the exact inverse
    of :func:`frames_to_tensor` on float32.
    """
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise InputError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.ndim == 5:
        if tensor.shape[0] != 1:
            raise InputError(
                f"tensor holds a batch of {tensor.shape[0]} videos {tuple(tensor.shape)}; "
                "convert one at a time, e.g. tensor_to_frames(tensor[i])"
            )
        tensor = tensor[0]
    if tensor.ndim != 4 or tensor.shape[0] != 3:
        raise InputError(
            "tensor must be shaped (1, 3, frames, height, width) or (3, frames, height, "
            f"width), got {tuple(tensor.shape)}"
        )
    if not tensor.is_floating_point():
        raise InputError(f"tensor must be floating point in [-1, 1], got {tensor.dtype}")
    values = tensor.detach().to(device="cpu", dtype=torch.float32)
    if torch.isnan(values).any():
        raise InputError(
            f"tensor holds {int(torch.isnan(values).sum())} NaN values; the model output is broken"
        )
    values = ((values + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return values.permute(1, 2, 3, 0).contiguous().numpy()
