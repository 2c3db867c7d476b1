"""ShapeWorld footage: multi-shot product videos as mp4, the embedded input of ``flowstudio data build``.

``flowstudio data footage OUT --videos N`` writes ``video_XXXXX.mp4`` (H.264) and its sidecar
``video_XXXXX.json``: the shots (first frame, frame count, :class:`~flowstudio.worlds.shapes.SceneSpec`)
that the build reads as the clip's metadata (captions, object masks, the readers' ground truth).
Each video is 1 to 3 shots of 33 to 49 frames cut together, so the build's shot detection has real
cuts to find. Video ``i`` depends only on ``(seed, i)`` and the settings; a run resumes where it
stopped (the sidecar is written last).

``materials`` restricts the products' materials (default: all five). A shot drawn with another
material gets one of the allowed ones from its own random stream, so every other attribute of the
scene is the one the unrestricted footage has. The toy model's VAE erases patterns
(``benchmarks/results/material_vae.md``), so a pair dataset made with it can only hold plain
products: ``--materials matte,glossy`` makes footage whose every clip can become a valid pair.

With ``defects`` (the default), every :data:`DEFECT_EVERY`-th video carries one made defect, named in
its sidecar, cycling over :data:`DEFECTS`, so the datasheet can show each stage catching its own:

==============  =================================================================  ===================
defect          what is written                                                     caught as
==============  =================================================================  ===================
``corrupt``     the mp4 cut to its first third                                      probe / decode
``too_short``   a 6-frame video                                                     probe/too_short
``black``       one shot replaced by black frames                                   filters/black_frames
``still``       one shot is its first frame repeated                                filters/frozen_frames
``blurry``      one shot blurred (Gaussian, sigma 3)                                filters/blurry
``duplicate``   the previous clean video, re-encoded at another quality             dedup/near_duplicate
==============  =================================================================  ===================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio.checks import check_int
from flowstudio.errors import InputError
from flowstudio.video import write_video
from flowstudio.worlds._writer import record_matches, write_dataset, write_record
from flowstudio.worlds.shapes import (
    DEFAULT_FPS,
    MATERIALS,
    SceneSpec,
    check_clip_size,
    random_spec,
    render_clip,
)

FORMAT = "flowstudio.shapeworld-footage/1"
SHOT_FRAMES = (33, 37, 41, 45, 49)
DEFECTS = ("corrupt", "too_short", "black", "still", "blurry", "duplicate")
#: defects that change one whole shot (the middle one, see :func:`defective_shot`)
SHOT_DEFECTS = ("black", "still", "blurry")
DEFECT_EVERY = 10


def video_record(
    seed: int,
    index: int,
    *,
    height: int = 128,
    width: int = 128,
    fps: float = DEFAULT_FPS,
    defects: bool = True,
    materials: tuple[str, ...] = MATERIALS,
) -> dict[str, Any]:
    """The sidecar of video ``index`` (what ``video_XXXXX.json`` holds), without rendering anything."""
    rng = np.random.default_rng([seed, index, 7])
    shots, start = [], 0
    for shot in range(int(rng.integers(1, 4))):
        frames = int(SHOT_FRAMES[int(rng.integers(len(SHOT_FRAMES)))])
        spec = random_spec(rng).to_dict()
        if spec["material"] not in materials:  # its own stream: the main draws stay as they are
            pick = np.random.default_rng([seed, index, 8, shot]).integers(len(materials))
            spec["material"] = materials[int(pick)]
        shots.append({"start": start, "frames": frames, "spec": spec})
        start += frames
    defect = None
    if defects and index % DEFECT_EVERY == DEFECT_EVERY - 1:
        defect = DEFECTS[(index // DEFECT_EVERY) % len(DEFECTS)]
        if defect == "duplicate":
            if index == 0:
                defect = None
            else:  # the same shots as the video before it (itself clean: its index is not a defect slot)
                size = {"height": height, "width": width, "fps": fps}
                shots = video_record(seed, index - 1, **size, materials=materials)["shots"]
        elif defect == "too_short":
            shots = shots[:1]
    return {
        "format": FORMAT,
        "index": index,
        "dataset_seed": seed,
        "height": height,
        "width": width,
        "fps": fps,
        "video": f"video_{index:05d}.mp4",
        "shots": shots,
        "defect": defect,
    }


def defective_shot(record: dict[str, Any]) -> int | None:
    """Index of the shot a shot defect changes in a footage sidecar: a middle shot (the only one of a
    one-shot video); ``None`` for a video without one."""
    if record.get("defect") not in SHOT_DEFECTS or not record.get("shots"):
        return None
    return len(record["shots"]) // 2


def render_video(record: dict[str, Any]) -> np.ndarray:
    """The frames of a sidecar's video, uint8 ``(T, H, W, 3)``, with its defect applied."""
    h, w = record["height"], record["width"]
    parts = [render_clip(SceneSpec.from_dict(s["spec"]), s["frames"], h, w) for s in record["shots"]]
    defect = record["defect"]
    k = defective_shot(record)
    if k is not None:
        if defect == "black":
            parts[k] = np.zeros_like(parts[k])
        elif defect == "still":
            parts[k] = np.repeat(parts[k][:1], len(parts[k]), axis=0)
        else:
            import cv2

            parts[k] = np.stack([cv2.GaussianBlur(f, (0, 0), 3) for f in parts[k]])
    frames = np.concatenate(parts)
    return frames[:6] if defect == "too_short" else frames


def make_footage(
    out_dir: str | os.PathLike[str],
    videos: int,
    seed: int = 0,
    *,
    height: int = 128,
    width: int = 128,
    fps: float = DEFAULT_FPS,
    defects: bool = True,
    workers: int = 1,
    progress: bool = True,
    materials: tuple[str, ...] | list[str] | None = None,
) -> Path:
    """Write ``videos`` ShapeWorld videos with sidecars to ``out_dir``; returns its ``manifest.jsonl``.
    ``materials``: the products' materials allowed (``None``: all)."""
    for name, value, low in (("videos", videos, 1), ("seed", seed, 0), ("workers", workers, 1)):
        check_int(name, value, minimum=low)
    allowed = check_materials(materials)
    check_clip_size(17, height, width)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    settings = {"height": height, "width": width, "fps": float(fps), "defects": defects}
    if allowed != MATERIALS:  # a footage folder made before the option keeps its settings record
        settings["materials"] = list(allowed)

    def expected(index: int) -> dict[str, Any]:
        return video_record(
            seed, index, height=height, width=width, fps=float(fps), defects=defects, materials=allowed
        )

    return write_dataset(
        out,
        videos,
        seed=seed,
        settings=settings,
        expected=expected,
        is_complete=_is_complete,
        write_clip=_write_video,
        workers=workers,
        resume=True,
        progress=progress,
        name="footage",
    )


def _write_video(job: tuple[str, int, int, dict[str, Any]]) -> dict[str, Any]:
    out_dir, seed, index, settings = job
    out = Path(out_dir)
    size = {"height": settings["height"], "width": settings["width"]}
    materials = tuple(settings.get("materials", MATERIALS))
    record = video_record(
        seed, index, **size, fps=settings["fps"], defects=settings["defects"], materials=materials
    )
    path = out / record["video"]
    crf = 23 if record["defect"] == "duplicate" else 12
    write_video(path, render_video(record), settings["fps"], crf=crf, preset="veryfast")
    if record["defect"] == "corrupt":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    write_record(out, record)
    return record


def check_materials(materials: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """The allowed materials in the world's order; ``None`` or empty: all of them."""
    if not materials:
        return MATERIALS
    unknown = sorted(set(materials) - set(MATERIALS))
    if unknown:
        raise InputError(f"materials: {', '.join(unknown)} not among {', '.join(MATERIALS)}")
    return tuple(m for m in MATERIALS if m in materials)


def _is_complete(out: Path, expected: dict[str, Any]) -> bool:
    video = out / expected["video"]
    return record_matches(out, expected) and video.is_file() and video.stat().st_size > 0
