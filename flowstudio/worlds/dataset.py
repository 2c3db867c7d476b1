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
from flowstudio.worlds.captions import CaptionChoices, caption
from flowstudio.worlds.edits import EDIT_TYPES, edit_prompt_pair, edit_spec
from flowstudio.worlds.shapes import DEFAULT_FPS, SceneSpec, check_clip_size, random_spec, render_scene

logger = logging.getLogger(__name__)

FORMAT = "flowstudio.shapes/1"


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
        check_int(name, value, minimum=low)
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

    def expected(index: int) -> dict[str, Any]:
        return clip_record(
            seed,
            index,
            num_frames=num_frames,
            height=height,
            width=width,
            fps=float(fps),
            with_edits=with_edits,
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
        name="shapes",
    )


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
    save_npz_atomic(out / record["mask"], masks)
    write_record(out, record)
    return record


def _is_complete(out: Path, expected: dict[str, Any]) -> bool:
    """Whether the clip's record matches ``expected`` and its files are present and non-empty."""
    if not record_matches(out, expected):
        return False
    files = [expected["video"], expected["mask"]] + ([expected["edit"]["video"]] if expected["edit"] else [])
    if any(not (out / name).is_file() or (out / name).stat().st_size == 0 for name in files):
        return False
    keys = npz_keys(out / expected["mask"])
    return (
        keys is not None and {"mask", "shape"} <= keys and (expected["edit"] is None or "edit_mask" in keys)
    )
