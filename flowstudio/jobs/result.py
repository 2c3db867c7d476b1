"""One result type for every job, and the one writer of outputs: mp4s plus one JSON record.

``JobResult.write(out)`` writes ``out`` (the main video), ``<stem>_<name>.mp4`` for each other video
(an edit's ``side_by_side``) and ``<stem>.json``. Everything is first written to hidden temporary
files in the same folder, then moved into place with :func:`os.replace`, the JSON last: a reader
that sees the JSON sees every video it names, and a failure leaves no half-written result (and
any earlier result at those paths untouched, except videos already moved when a later move fails).

The record (``JobResult.record()``)::

    format, version       "flowstudio-job", 1
    kind                  generate | edit | avatar
    request               the request as JSON (rerun with flowstudio.jobs.parse_request)
    settings              the resolved settings (preset and overrides merged, defaults filled)
    seed                  the seed the run used
    files                 name -> file name, relative to the JSON's folder
    fps, frames           frame rate and (T, H, W) of the main video
    model_calls           transformer forwards
    timings               seconds: load, run, write, total
    provenance            versions (flowstudio, torch, diffusers, ...), model (path, hash, description),
                          device, dtype
    info                  what else the job reports (edit: normalisation, source-feature mode, ...)
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio.checks import check_outputs
from flowstudio.errors import InputError

FORMAT = "flowstudio-job"
VERSION = 1
#: Timing keys that differ between two runs of one request (left out when comparing records).
TIMING_KEYS = ("timings",)


def output_paths(out: str | os.PathLike[str], names: tuple[str, ...] = ("video",)) -> dict[str, Path]:
    """Where :meth:`JobResult.write` puts each video of ``names`` and the JSON, for ``out``."""
    path = Path(out)
    paths = {name: path if name == "video" else path.with_name(f"{path.stem}_{name}.mp4") for name in names}
    return paths | {"record": path.with_suffix(".json")}


def check_output_paths(
    out: str | os.PathLike[str],
    names: tuple[str, ...] = ("video",),
    *,
    inputs: list[Any] | tuple[Any, ...] = (),
    option: str = "--out",
) -> dict[str, Path]:
    """Refuse, before a run, an ``out`` that is not an mp4/m4v/mov, or whose files are folders or inputs."""
    from flowstudio.video import WRITE_SUFFIXES

    path = Path(out)
    if path.suffix.lower() not in WRITE_SUFFIXES:
        raise InputError(
            f"{option} {path} is a {path.suffix or 'suffix-less'} file; flowstudio writes H.264 "
            f"{', '.join(WRITE_SUFFIXES)}: change the extension (e.g. {path.with_suffix('.mp4').name})"
        )
    paths = output_paths(path, names)
    files = [p for p in inputs if isinstance(p, str | os.PathLike)]
    check_outputs(paths.values(), inputs=files, option=option)
    return paths


@dataclass
class JobResult:
    """What :func:`flowstudio.jobs.run` returns for any request.

    Attributes:
        kind: ``generate``, ``edit`` or ``avatar``.
        videos: name -> uint8 ``(T, H, W, 3)``; ``video`` is the main one (an edit adds ``side_by_side``).
        fps: frame rate of the videos.
        request: the request as JSON.
        settings: the resolved settings as JSON.
        seed: the seed used.
        model_calls: transformer forwards.
        timings: seconds per phase (``load``, ``run``, ``write``, ``total``).
        provenance: versions, model (path, hash, description), device, dtype, vae_dtype.
        info: anything else the job reports.
        audio: ``(waveform, rate)`` muxed into the main video (avatar), or ``None``.
        files: what :meth:`write` wrote (name -> path; ``record`` is the JSON).
        engine: the job's own result object (``EditResult``, ``GenerationResult``, ...), not recorded.
    """

    kind: str
    videos: dict[str, np.ndarray]
    fps: float
    request: dict[str, Any]
    settings: dict[str, Any]
    seed: int
    model_calls: int
    timings: dict[str, float]
    provenance: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    audio: tuple[np.ndarray, int] | None = None
    files: dict[str, Path] = field(default_factory=dict)
    engine: Any = None

    @property
    def frames(self) -> np.ndarray:
        """The main video, uint8 ``(T, H, W, 3)``."""
        return self.videos["video"]

    def record(self) -> dict[str, Any]:
        """The JSON record (see the module docstring); file names relative to the JSON's folder."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "request": self.request,
            "settings": self.settings,
            "seed": self.seed,
            "files": {k: p.name for k, p in self.files.items() if k != "record"},
            "fps": self.fps,
            "frames": list(self.frames.shape[:3]),
            "model_calls": self.model_calls,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "provenance": self.provenance,
            "info": self.info,
        }

    def write(self, out: str | os.PathLike[str]) -> dict[str, Path]:
        """Write the videos and the JSON record for ``out`` (see the module docstring); returns the paths."""
        import time

        from flowstudio.video import write_video

        start = time.perf_counter()
        paths = check_output_paths(out, tuple(self.videos), option="out")
        paths["video"].parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:12]
        temps = {name: p.with_name(f".{p.stem}.{token}.partial{p.suffix}") for name, p in paths.items()}
        try:
            for name, frames in self.videos.items():
                audio, rate = self.audio if name == "video" and self.audio is not None else (None, None)
                write_video(temps[name], np.ascontiguousarray(frames), self.fps, audio=audio, audio_rate=rate)
            self.files = dict(paths)
            self.timings["write"] = time.perf_counter() - start
            if "total" in self.timings:
                self.timings["total"] += self.timings["write"]
            text = json.dumps(self.record(), indent=2, default=_json_default) + "\n"
            temps["record"].write_text(text, encoding="utf-8")
            for name in (*self.videos, "record"):  # the JSON last: it vouches for the videos
                os.replace(temps[name], paths[name])
        except BaseException:
            self.files = {}
            for temp in temps.values():
                temp.unlink(missing_ok=True)
            raise
        return self.files


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return f"<array {value.dtype} {tuple(value.shape)}>"
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` without what differs between two runs of one request (timings)."""
    return {k: v for k, v in record.items() if k not in TIMING_KEYS}
