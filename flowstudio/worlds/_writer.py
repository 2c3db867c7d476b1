"""The resumable, parallel dataset writer shared by the toy worlds (ShapeWorld, TalkingShapes).

A world supplies ``expected(index) -> record`` (a pure function of the seed and settings),
``is_complete(out, record) -> bool`` for its own files, and a module-level
``write_clip((out_dir, seed, index, settings)) -> record`` (module-level so that spawned workers can
import it). Clips already written with the same record are skipped; the manifest is written last,
atomically, in index order.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
Job = tuple[str, int, int, dict[str, Any]]


def write_dataset(
    out: Path,
    num_clips: int,
    *,
    seed: int,
    settings: dict[str, Any],
    expected: Callable[[int], dict[str, Any]],
    is_complete: Callable[[Path, dict[str, Any]], bool],
    write_clip: Callable[[Job], dict[str, Any]],
    workers: int,
    resume: bool,
    progress: bool,
    name: str,
    max_chunksize: int = 16,
) -> Path:
    """Write the clips that are missing (all of them without ``resume``), then the manifest."""
    records: dict[int, dict[str, Any]] = {}
    todo = []
    for index in range(num_clips):
        record = expected(index)
        if resume and is_complete(out, record):
            records[index] = record
        else:
            todo.append(index)
    if records:
        logger.info("resuming %s: %d of %d clips already written", out, len(records), num_clips)
    jobs = [(str(out), seed, index, settings) for index in todo]
    with tqdm(total=num_clips, initial=len(records), desc=name, unit="clip", disable=not progress) as bar:
        for record in _run(write_clip, jobs, workers, max_chunksize):
            records[record["index"]] = record
            bar.update(1)
    manifest = out / MANIFEST
    write_text_atomic(
        manifest, "".join(json.dumps(records[i], sort_keys=True) + "\n" for i in range(num_clips))
    )
    logger.info("wrote %d %s clips (%d new) to %s", num_clips, name, len(todo), out)
    return manifest


def _run(
    write_clip: Callable[[Job], dict[str, Any]], jobs: list[Job], workers: int, max_chunksize: int
) -> Iterator[dict[str, Any]]:
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield write_clip(job)
        return
    # spawn: same behaviour on every OS, and no fork of a parent that may hold threads (torch, tqdm)
    context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(max_chunksize, len(jobs) // (workers * 8)))
    with context.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap_unordered(write_clip, jobs, chunksize=chunksize)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already


def record_matches(out: Path, expected: dict[str, Any]) -> bool:
    """Whether the clip's JSON record on disk equals ``expected`` (warns when it differs)."""
    path = out / expected["video"].replace(".mp4", ".json")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if record != expected:
        logger.warning("%s was written with other settings or code; rewriting it", path)
        return False
    return True


def npz_keys(path: Path) -> set[str] | None:
    """Keys of an ``.npz`` file, or ``None`` when it is missing or unreadable."""
    try:
        with np.load(path) as data:
            return set(data.files)
    except (OSError, ValueError):
        return None


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp.npz")
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_record(out: Path, record: dict[str, Any]) -> None:
    """The clip's JSON record, written last so that its presence means the clip is complete."""
    write_text_atomic(
        out / record["video"].replace(".mp4", ".json"), json.dumps(record, indent=1, sort_keys=True)
    )
