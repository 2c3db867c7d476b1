"""Write a TalkingShapes dataset: talking-head clips with their audio, structure latents and mouth truth.

Layout of ``out_dir`` (``XXXXX`` is the zero-padded clip index)::

    clip_XXXXX.mp4    the clip (H.264, 25 fps) with the speech muxed (AAC, 16 kHz mono)
    clip_XXXXX.npz    per-frame ground truth: ``structure`` float32 (T, 7 + 3K), ``mouth_opening``,
                      ``loudness``, ``blink``, ``smile`` float32 (T,), ``viseme`` int8 (T,), and
                      ``audio`` int16 (N,) (the exact waveform, before AAC)
    clip_XXXXX.json   identity, speech spec, fps, sizes, sample rate, mouth latency, keypoint names
    manifest.jsonl    one JSON record per clip, in index order, written last

Clip ``i`` is a pure function of ``(seed, i)`` and the settings, so a dataset is reproducible and a
run can be interrupted and resumed: clips whose JSON record matches the settings and whose files are
present are skipped. Each file is written to a temporary name and moved into place, the JSON record
last, so an interrupted clip is simply redone.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio.checks import check_int
from flowstudio.errors import InputError
from flowstudio.video import write_video
from flowstudio.worlds._writer import (
    npz_keys,
    record_matches,
    save_npz_atomic,
    write_dataset,
    write_record,
)
from flowstudio.worlds.faces import (
    DEFAULT_FPS,
    KEYPOINT_NAMES,
    MOUTH_LATENCY,
    POSE_CHANNELS,
    FaceIdentity,
    check_face_size,
    random_identity,
    render_talking_clip,
)
from flowstudio.worlds.faces_audio import ENGINES, SAMPLE_RATE, SpeechSpec, espeak_available, random_speech

logger = logging.getLogger(__name__)

FORMAT = "flowstudio.faces/1"

ARRAYS = ("structure", "mouth_opening", "loudness", "blink", "smile", "viseme", "audio")


def clip_identity_speech(
    seed: int, index: int, engine: str = "procedural"
) -> tuple[FaceIdentity, SpeechSpec]:
    """Identity and speech of clip ``index`` of the dataset with ``seed``; depend on nothing else."""
    rng = np.random.default_rng([seed, index, 5])
    return random_identity(rng), random_speech(rng, engine)


def clip_record(
    seed: int,
    index: int,
    *,
    seconds: float = 4.0,
    height: int = 128,
    width: int = 128,
    fps: float = DEFAULT_FPS,
    engine: str = "procedural",
) -> dict[str, Any]:
    """The JSON record of clip ``index`` (what ``clip_XXXXX.json`` holds), without rendering anything."""
    identity, speech = clip_identity_speech(seed, index, engine)
    stem = f"clip_{index:05d}"
    return {
        "format": FORMAT,
        "index": index,
        "dataset_seed": seed,
        "seconds": float(seconds),
        "num_frames": max(1, int(np.floor(seconds * fps + 0.5))),
        "height": height,
        "width": width,
        "fps": float(fps),
        "sample_rate": SAMPLE_RATE,
        "mouth_latency": MOUTH_LATENCY,
        "video": f"{stem}.mp4",
        "arrays": f"{stem}.npz",
        "identity": identity.to_dict(),
        "speech": speech.to_dict(),
        "structure_layout": {
            "pose_channels": ["yaw", "pitch", "roll", "tx", "ty", "tz", "scale"][:POSE_CHANNELS],
            "keypoints": list(KEYPOINT_NAMES),
            "channels": POSE_CHANNELS + 3 * len(KEYPOINT_NAMES),
        },
    }


def read_clip_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load a ``clip_XXXXX.npz`` into a dict (``audio`` back to float32 in ``[-1, 1]``)."""
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    if "audio" in arrays:
        arrays["audio"] = arrays["audio"].astype(np.float32) / 32767.0
    return arrays


def make_faces_dataset(
    out_dir: str | os.PathLike[str],
    num_clips: int,
    seed: int = 0,
    seconds: float = 4.0,
    height: int = 128,
    width: int = 128,
    workers: int = 2,
    resume: bool = True,
    *,
    fps: float = DEFAULT_FPS,
    engine: str = "procedural",
    crf: int = 18,
    preset: str = "veryfast",
    progress: bool = True,
) -> Path:
    """Render ``num_clips`` TalkingShapes clips to ``out_dir`` (layout in the module docstring).

    Args:
        out_dir: output folder, created if missing.
        num_clips: number of clips; clip ``i`` depends only on ``(seed, i)`` and the settings.
        seed: dataset seed.
        seconds: clip length (0.2 to 600).
        height, width: multiples of 32.
        workers: processes rendering and encoding in parallel (1: in this process).
        resume: skip clips already written with the same settings; ``False`` rewrites every clip.
        fps: frame rate.
        engine: ``"procedural"`` voice, or ``"espeak"`` (needs the ``espeak-ng`` binary).
        crf, preset: x264 quality and speed (see :func:`flowstudio.video.write_video`).
        progress: show a tqdm progress bar.

    Returns:
        The path of ``manifest.jsonl``.

    Raises:
        InputError: an argument is invalid, or espeak-ng was asked for and is not installed.
    """
    for name, value, low in (("num_clips", num_clips, 0), ("seed", seed, 0), ("workers", workers, 1)):
        check_int(name, value, minimum=low)
    check_face_size(height, width)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0.2 <= seconds <= 600:
        raise InputError(f"seconds must be a number from 0.2 to 600, got {seconds!r}")
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 1 <= fps <= 120:
        raise InputError(f"fps must be a number from 1 to 120, got {fps!r}")
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "espeak" and not espeak_available():
        raise InputError(
            "engine='espeak' needs the espeak-ng binary on PATH (e.g. apt-get install espeak-ng); "
            "use engine='procedural' for the built-in voice"
        )
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"out_dir {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "seconds": float(seconds),
        "height": height,
        "width": width,
        "fps": float(fps),
        "engine": engine,
        "crf": crf,
        "preset": preset,
    }

    def expected(index: int) -> dict[str, Any]:
        return clip_record(
            seed, index, seconds=float(seconds), height=height, width=width, fps=float(fps), engine=engine
        )

    return write_dataset(
        out,
        num_clips,
        seed=seed,
        settings=settings,
        expected=expected,
        is_complete=_is_complete,
        write_clip=_write_clip,
        workers=workers,
        resume=resume,
        progress=progress,
        name="faces",
        max_chunksize=8,
    )


def _write_clip(job: tuple[str, int, int, dict[str, Any]]) -> dict[str, Any]:
    """Render, encode and write clip ``index``; returns its record."""
    out_dir, seed, index, settings = job
    out = Path(out_dir)
    record = clip_record(
        seed,
        index,
        seconds=settings["seconds"],
        height=settings["height"],
        width=settings["width"],
        fps=settings["fps"],
        engine=settings["engine"],
    )
    clip = render_talking_clip(
        FaceIdentity.from_dict(record["identity"]),
        SpeechSpec.from_dict(record["speech"]),
        record["seconds"],
        record["height"],
        record["width"],
        record["fps"],
        mouth_latency=record["mouth_latency"],
        sample_rate=record["sample_rate"],
    )
    write_video(
        out / record["video"],
        clip.frames,
        record["fps"],
        audio=clip.audio,
        audio_rate=clip.sample_rate,
        crf=settings["crf"],
        preset=settings["preset"],
    )
    arrays = {
        "structure": clip.structure.to_array(),
        "mouth_opening": clip.mouth_opening,
        "loudness": clip.loudness,
        "blink": clip.motion.blink,
        "smile": clip.motion.smile,
        "viseme": clip.viseme,
        "audio": np.round(np.clip(clip.audio, -1, 1) * 32767).astype(np.int16),
    }
    save_npz_atomic(out / record["arrays"], arrays)
    write_record(out, record)
    return record


def _is_complete(out: Path, expected: dict[str, Any]) -> bool:
    """Whether the clip's record matches ``expected`` and its files are present and readable."""
    if not record_matches(out, expected):
        return False
    video = out / expected["video"]
    if not video.is_file() or video.stat().st_size == 0:
        return False
    keys = npz_keys(out / expected["arrays"])
    return keys is not None and set(ARRAYS) <= keys
