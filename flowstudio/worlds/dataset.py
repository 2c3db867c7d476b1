"""Write a ShapeWorld dataset: clips, captions, exact masks and ground-truth edit pairs.

Layout of ``out_dir`` (``XXXXX`` is the zero-padded clip index)::

    clip_XXXXX.mp4        the clip (H.264, ``fps`` frames per second)
    clip_XXXXX_edit.mp4   its ground-truth edit (with_edits), edit type cycling over EDIT_TYPES
    clip_XXXXX_mask.npz   bit-packed bool masks: ``mask`` (and ``edit_mask``), see read_masks
    clip_XXXXX.json       spec, caption, fps, sizes, and the edit (type, target spec, prompts)
    manifest.jsonl        one JSON record per clip, in index order, written last

Clip ``i`` is a pure function of ``(seed, i)`` and the settings, so a dataset is reproducible and a
run can be interrupted and resumed: clips whose JSON record matches the settings and whose files are
present are skipped. Each file is written to a temporary name and moved into place, the JSON record
last, so an interrupted clip is simply redone.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from flowstudio.errors import InputError
from flowstudio.video import write_video
from flowstudio.worlds.captions import CaptionChoices, caption
from flowstudio.worlds.edits import EDIT_TYPES, edit_prompt_pair, edit_spec
from flowstudio.worlds.shapes import DEFAULT_FPS, SceneSpec, check_clip_size, random_spec, render_scene

logger = logging.getLogger(__name__)

FORMAT = "flowstudio.shapes/1"
MANIFEST = "manifest.jsonl"


def clip_spec(seed: int, index: int) -> SceneSpec:
    """The spec of clip ``index`` of the dataset with ``seed``; depends on nothing else."""
    return random_spec(np.random.default_rng([seed, index]))


def clip_record(
    seed: int,
    index: int,
    *,
    num_frames: int = 17,
    height: int = 128,
    width: int = 128,
    fps: float = DEFAULT_FPS,
    with_edits: bool = True,
) -> dict[str, Any]:
    """The JSON record of clip ``index`` (what ``clip_XXXXX.json`` holds), without rendering anything."""
    spec = clip_spec(seed, index)
    rng = np.random.default_rng([seed, index, 1])
    choices = CaptionChoices.draw(rng)
    stem = f"clip_{index:05d}"
    record: dict[str, Any] = {
        "format": FORMAT,
        "index": index,
        "dataset_seed": seed,
        "num_frames": num_frames,
        "height": height,
        "width": width,
        "fps": fps,
        "video": f"{stem}.mp4",
        "mask": f"{stem}_mask.npz",
        "spec": spec.to_dict(),
        "caption": caption(spec, choices=choices),
        "edit": None,
    }
    if with_edits:
        edit_type = EDIT_TYPES[index % len(EDIT_TYPES)]
        target = edit_spec(spec, edit_type, rng)
        source_prompt, target_prompt = edit_prompt_pair(spec, target, choices=choices)
        record["edit"] = {
            "type": edit_type,
            "spec": target.to_dict(),
            "source_prompt": source_prompt,
            "target_prompt": target_prompt,
            "video": f"{stem}_edit.mp4",
        }
    return record


def read_masks(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Unpack a ``clip_XXXXX_mask.npz``: ``{"mask": bool (T, H, W)[, "edit_mask": ...]}``."""
    with np.load(path) as data:
        shape = tuple(int(v) for v in data["shape"])
        count = int(np.prod(shape))
        return {
            key: np.unpackbits(data[key], count=count).astype(bool).reshape(shape)
            for key in ("mask", "edit_mask")
            if key in data
        }


def make_shapes_dataset(
    out_dir: str | os.PathLike[str],
    num_clips: int,
    seed: int = 0,
    num_frames: int = 17,
    height: int = 128,
    width: int = 128,
    with_edits: bool = True,
    workers: int = 2,
    resume: bool = True,
    *,
    fps: float = DEFAULT_FPS,
    crf: int = 18,
    preset: str = "veryfast",
    progress: bool = True,
) -> Path:
    """Render ``num_clips`` ShapeWorld clips to ``out_dir`` (layout in the module docstring).

    Args:
        out_dir: output folder, created if missing.
        num_clips: number of clips; clip ``i`` depends only on ``(seed, i)`` and the settings.
        seed: dataset seed.
        num_frames: ``4k + 1``.
        height, width: multiples of 32.
        with_edits: also write one ground-truth edit per clip (type ``EDIT_TYPES[i % 5]``).
        workers: processes rendering and encoding in parallel (1: in this process).
        resume: skip clips already written with the same settings; ``False`` rewrites every clip.
        fps: frame rate written in the mp4 files and records.
        crf, preset: x264 quality and speed (see :func:`flowstudio.video.write_video`).
        progress: show a tqdm progress bar.

    Returns:
        The path of ``manifest.jsonl``.

    Raises:
        InputError: an argument is invalid.
    """
    for name, value, low in (("num_clips", num_clips, 0), ("seed", seed, 0), ("workers", workers, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    check_clip_size(num_frames, height, width)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"out_dir {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "num_frames": num_frames,
        "height": height,
        "width": width,
        "fps": float(fps),
        "with_edits": with_edits,
        "crf": crf,
        "preset": preset,
    }

    records: dict[int, dict[str, Any]] = {}
    todo = []
    for index in range(num_clips):
        expected = clip_record(
            seed,
            index,
            num_frames=num_frames,
            height=height,
            width=width,
            fps=float(fps),
            with_edits=with_edits,
        )
        if resume and _is_complete(out, expected):
            records[index] = expected
        else:
            todo.append(index)
    if records:
        logger.info("resuming %s: %d of %d clips already written", out, len(records), num_clips)
    jobs = [(str(out), seed, index, settings) for index in todo]
    with tqdm(total=num_clips, initial=len(records), desc="shapes", unit="clip", disable=not progress) as bar:
        for record in _run(jobs, workers):
            records[record["index"]] = record
            bar.update(1)
    manifest = out / MANIFEST
    _write_atomic(manifest, "".join(json.dumps(records[i], sort_keys=True) + "\n" for i in range(num_clips)))
    logger.info("wrote %d clips (%d new) to %s", num_clips, len(todo), out)
    return manifest


def _run(jobs: list[tuple[str, int, int, dict[str, Any]]], workers: int) -> Iterator[dict[str, Any]]:
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield _write_clip(job)
        return
    # spawn: same behaviour on every OS, and no fork of a parent that may hold threads (torch, tqdm)
    context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(16, len(jobs) // (workers * 8)))
    with context.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap_unordered(_write_clip, jobs, chunksize=chunksize)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already


def _write_clip(job: tuple[str, int, int, dict[str, Any]]) -> dict[str, Any]:
    """Render, encode and write clip ``index`` (and its edit); returns its record."""
    out_dir, seed, index, settings = job
    out = Path(out_dir)
    t, h, w = settings["num_frames"], settings["height"], settings["width"]
    record = clip_record(
        seed, index, num_frames=t, height=h, width=w, fps=settings["fps"], with_edits=settings["with_edits"]
    )
    source = render_scene(SceneSpec.from_dict(record["spec"]), t, h, w)
    encode = {"crf": settings["crf"], "preset": settings["preset"]}
    write_video(out / record["video"], source.frames, settings["fps"], **encode)
    masks = {"mask": np.packbits(source.mask.reshape(-1)), "shape": np.asarray(source.mask.shape)}
    if record["edit"] is not None:
        target = render_scene(SceneSpec.from_dict(record["edit"]["spec"]), t, h, w)
        write_video(out / record["edit"]["video"], target.frames, settings["fps"], **encode)
        masks["edit_mask"] = np.packbits(target.mask.reshape(-1))
    tmp = out / f".{record['mask']}.{uuid.uuid4().hex[:8]}.tmp.npz"
    try:
        np.savez_compressed(tmp, **masks)
        os.replace(tmp, out / record["mask"])
    finally:
        tmp.unlink(missing_ok=True)
    _write_atomic(
        out / record["video"].replace(".mp4", ".json"), json.dumps(record, indent=1, sort_keys=True)
    )
    return record


def _is_complete(out: Path, expected: dict[str, Any]) -> bool:
    """Whether the clip's record matches ``expected`` and its files are present and non-empty."""
    path = out / expected["video"].replace(".mp4", ".json")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if record != expected:
        if path.exists():
            logger.warning("%s was written with other settings or code; rewriting it", path)
        return False
    files = [expected["video"], expected["mask"]] + ([expected["edit"]["video"]] if expected["edit"] else [])
    try:
        if any((out / name).stat().st_size == 0 for name in files):
            return False
        with np.load(out / expected["mask"]) as data:
            keys = set(data.files)
    except (OSError, ValueError):
        return False
    return {"mask", "shape"} <= keys and (expected["edit"] is None or "edit_mask" in keys)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
