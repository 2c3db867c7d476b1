"""Shared pieces of the board's tests: a tiny ShapeWorld set (5 cases, 5 frames of 64x64) and real
benchmark runs on it (identity, ground-truth) written by the benchmark runner itself."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

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


def wipe_board_tables(url: str, *, with_jobs: bool = False) -> None:
    """Drop the board's tables and version table (and the job store's with ``with_jobs``) from the
    database at ``url``, so that a test starts from an empty schema. Only tables are touched."""
    from sqlalchemy import MetaData, create_engine

    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    ours = [
        t
        for t in meta.sorted_tables
        if t.name.startswith("board_") or (with_jobs and t.name in ("jobs", "alembic_version"))
    ]
    meta.drop_all(engine, tables=ours)
    engine.dispose()


def db_rows(db: str | Path, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of a plain SQL query on the board's database (a SQLite path or a URL), read on a fresh
    connection of its own: what another process would see, not what a store has cached."""
    from sqlalchemy import create_engine, text

    from flowstudio.board.db import database_url

    engine = create_engine(database_url(db))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()
