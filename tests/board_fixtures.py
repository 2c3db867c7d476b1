"""Shared pieces of the board's tests: a tiny ShapeWorld set (5 cases, 5 frames of 64x64) and real
benchmark runs on it (identity, ground-truth) written by the benchmark runner itself."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from flowstudio.bench import get_method, make_shapeworld, run_benchmark
from flowstudio.bench.manifest import TestSet
from flowstudio.video import write_video


def tiny_set(folder: Path) -> TestSet:
    return make_shapeworld(folder, num_cases=5, num_frames=5, height=64, width=64)


def bench_run(testset: TestSet, method: str, out: Path) -> Path:
    """A real ``bench run`` of ``method`` on ``testset`` into ``out``; returns its results.json."""
    run_benchmark(method, get_method(method), testset, out, progress=False)
    return out / "results.json"


def mp4_bytes(frames: np.ndarray, folder: Path, name: str = "clip.mp4") -> bytes:
    path = write_video(folder / name, frames, fps=16.0)
    return path.read_bytes()


def outputs_zip(testset: TestSet, folder: Path, pick: str = "target", **members: bytes) -> bytes:
    """A zip of one mp4 per case (the ground truth, or the source with ``pick="source"``), plus or
    replacing ``members`` (name -> bytes; ``b""`` under a name drops that member)."""
    buffer = io.BytesIO()
    entries: dict[str, bytes] = {}
    for case in testset:
        frames = case.load_target() if pick == "target" else case.load_source()
        entries[f"{case.id}.mp4"] = mp4_bytes(frames, folder, f"{case.id}.mp4")
    entries.update(members)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            if data != b"":
                archive.writestr(name, data)
    return buffer.getvalue()
