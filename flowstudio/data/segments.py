"""Stage 1 of ``flowstudio data build``, one task per input video: probe, decode, shot cuts, clips of
``frames`` frames at the model's size, filters, near-duplicate signature, caption.

Output of a video ``<video_id>`` (its path under the input folder, ``/`` as ``__``)::

    OUT/segments/<video_id>/<segment_id>.mp4    the normalised clip (H.264, ``crf``)
    OUT/done/segments/<video_id>.json           its done-record: written last, atomically

A clip is one of at most ``windows_per_shot`` non-overlapping windows of a shot, one frame in from
each cut (a detector may place a cut one frame off). Filters: :mod:`~flowstudio.data.filters`, and
burnt-in text (:mod:`~flowstudio.data.text`) when a text model is given. Each window is scaled to
cover the model's size and centre-cropped. A window whose frames span two shots of the ShapeWorld
sidecar (a cut the detector missed) is dropped as ``metadata/spans_shots``: its caption and masks
would be wrong.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from flowstudio.data import dedup, filters, shots
from flowstudio.data.captions import model_captioner, sidecar_caption
from flowstudio.data.config import BuildConfig
from flowstudio.data.media import ProbeLimits, Refused, decode_video, probe
from flowstudio.errors import FlowstudioError
from flowstudio.video import write_video
from flowstudio.worlds._writer import write_text_atomic

FORMAT = "flowstudio.data.segments/1"
WORLD_FORMATS = ("flowstudio.shapeworld-footage/1", "flowstudio.shapes/1")
CUT_MARGIN = 1


def video_id(path: Path, root: Path) -> str:
    """The video's id: its path under ``root`` without the suffix, ``/`` replaced by ``__``."""
    return "__".join(path.relative_to(root).with_suffix("").parts)


def read_world_metadata(video: Path) -> list[dict[str, Any]] | None:
    """The shots (``start``, ``frames``, ``spec``) of a ShapeWorld sidecar ``<stem>.json``, else ``None``."""
    path = video.with_suffix(".json")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") not in WORLD_FORMATS:
        return None
    if "shots" in data:
        return list(data["shots"])
    return [{"start": 0, "frames": int(data["num_frames"]), "spec": data["spec"]}]  # worlds make shapes


def fit_geometry(height: int, width: int, out_h: int, out_w: int) -> tuple[float, int, int]:
    """``(scale, top, left)``: scale to cover ``out_h x out_w``, then the centre crop's corner."""
    scale = max(out_h / height, out_w / width)
    scaled_h, scaled_w = max(out_h, round(height * scale)), max(out_w, round(width * scale))
    return scale, (scaled_h - out_h) // 2, (scaled_w - out_w) // 2


def fit_frames(frames: np.ndarray, out_h: int, out_w: int, *, nearest: bool = False) -> np.ndarray:
    """Frames (or bool masks) scaled to cover ``out_h x out_w`` and centre-cropped."""
    t, h, w = frames.shape[:3]
    if (h, w) == (out_h, out_w):
        return frames
    scale, top, left = fit_geometry(h, w, out_h, out_w)
    size = (max(out_w, round(w * scale)), max(out_h, round(h * scale)))
    interpolation = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    source = frames.astype(np.uint8) if frames.dtype == bool else frames
    out = np.stack([cv2.resize(np.ascontiguousarray(f), size, interpolation=interpolation) for f in source])
    out = out[:, top : top + out_h, left : left + out_w]
    return out.astype(bool) if frames.dtype == bool else out


def _limits(config: BuildConfig) -> ProbeLimits:
    return ProbeLimits(config.min_side, config.fps_range, config.min_seconds, config.max_seconds)


def _drop(stage: str, reason: str, start: int, detail: str = "") -> dict[str, Any]:
    return {"stage": stage, "reason": reason, "start_frame": start, "detail": detail}


def _world_window(
    world: list[dict[str, Any]] | None, source_frames: np.ndarray
) -> dict[str, Any] | str | None:
    """The sidecar shot holding every frame of the window (spec, the shot's length, the offset in it);
    ``"spans"`` when the frames come from two shots; ``None`` without metadata or when the frames are
    not consecutive source frames (another frame rate: the world's masks would not line up)."""
    if world is None or np.any(np.diff(source_frames) != 1):
        return None
    first, last = int(source_frames[0]), int(source_frames[-1])
    for shot in world:
        if shot["start"] <= first and last < shot["start"] + shot["frames"]:
            return {"spec": shot["spec"], "shot_frames": int(shot["frames"]), "offset": first - shot["start"]}
    return "spans"


def process_video(relative: str, root: str, out: str, config: BuildConfig) -> dict[str, Any]:
    """Stage 1 on one input video; writes its clips and done-record; returns the record."""
    source = Path(root) / relative
    vid = video_id(source, Path(root))
    out_dir = Path(out)
    record: dict[str, Any] = {
        "format": FORMAT,
        "video_id": vid,
        "source": relative,
        "digest": config.segment_digest(),
    }
    clip_dir = out_dir / "segments" / vid
    shutil.rmtree(clip_dir, ignore_errors=True)  # leftovers of an interrupted attempt
    try:
        probe(source, _limits(config))
        decoded = decode_video(
            source,
            config.fps,
            config.decode_max_side,
            min_seconds=config.min_seconds,
            min_fps=config.fps_range[0],
        )
        record.update(_segments(source, decoded.frames, decoded.source_indices, clip_dir, vid, config))
        record["status"] = "ok"
    except Refused as refused:
        record.update(status="refused", stage=refused.stage, reason=refused.reason, detail=refused.detail)
    except FlowstudioError as error:  # e.g. a caption model that cannot run
        record.update(status="refused", stage="error", reason=type(error).__name__, detail=str(error))
    done = out_dir / "done" / "segments"
    done.mkdir(parents=True, exist_ok=True)
    write_text_atomic(done / f"{vid}.json", json.dumps(record, indent=1, sort_keys=True))
    return record


def _segments(
    source: Path, frames: np.ndarray, source_frames: np.ndarray, clip_dir: Path, vid: str, config: BuildConfig
) -> dict[str, Any]:
    cuts = shots.detect_cuts(frames, config.fps, threshold=config.shot_threshold)
    world = read_world_metadata(source)
    text = sidecar_caption(source)
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    length = config.frames
    for index, (shot_start, shot_end) in enumerate(shots.shots(len(frames), cuts)):
        start, end = (
            shot_start + CUT_MARGIN * (shot_start > 0),
            shot_end - CUT_MARGIN * (shot_end < len(frames)),
        )
        count = min(config.windows_per_shot, max(0, (end - start) // length))
        if count == 0:
            dropped.append(_drop("shots", "too_short", shot_start, f"{shot_end - shot_start} frames"))
            continue
        for a in range(start, start + count * length, length):
            result = _window(
                frames[a : a + length],
                source_frames[a : a + length],
                a,
                index,
                world,
                text,
                source,
                clip_dir,
                vid,
                config,
            )
            (kept if "id" in result else dropped).append(result)
    return {
        "frames_decoded": len(frames),
        "cuts": cuts,
        "shots": len(cuts) + 1,
        "segments": kept,
        "dropped": dropped,
    }


def _window(
    raw: np.ndarray,
    source_frames: np.ndarray,
    start: int,
    shot: int,
    world: list | None,
    text: str | None,
    source: Path,
    clip_dir: Path,
    vid: str,
    config: BuildConfig,
) -> dict[str, Any]:
    scene = _world_window(world, source_frames)
    if scene == "spans":
        return _drop("metadata", "spans_shots", start, "the window covers a cut the detector missed")
    clip = fit_frames(raw, config.height, config.width)
    measures, failed = filters.check_clip(clip, config.filters())
    if config.text_model:
        from flowstudio.data.text import text_detector

        detector = text_detector(str(Path(config.text_model).resolve()), config.text_input_size)
        measures["text_frames"] = detector.text_frames(clip)
        if measures["text_frames"] > config.max_text_frames:
            failed.append("burnt_in_text")
    if failed:
        return {**_drop("filters", failed[0], start, ", ".join(failed)), "measures": measures}
    caption, caption_source = _caption(clip, scene, text, config)
    if caption is None:
        return _drop("caption", "none", start, f"captioner {config.captioner!r} found no caption")
    segment_id = f"{vid}_f{start:06d}"
    clip_dir.mkdir(parents=True, exist_ok=True)
    video = clip_dir / f"{segment_id}.mp4"
    write_video(video, clip, config.fps, crf=config.crf, preset="veryfast")
    return {
        "id": segment_id,
        "video_id": vid,
        "shot": shot,
        "start_frame": start,
        "source_frames": [int(source_frames[0]), int(source_frames[-1])],
        "num_frames": len(clip),
        "height": config.height,
        "width": config.width,
        "fps": config.fps,
        "video": f"segments/{vid}/{segment_id}.mp4",
        "caption": caption,
        "caption_source": caption_source,
        "world": scene,
        "geometry": list(raw.shape[1:3]),
        "measures": {k: round(float(v), 4) for k, v in measures.items()},
        "signature": np.packbits(dedup.signature(clip)).tobytes().hex(),
    }


def _caption(
    clip: np.ndarray, scene: dict | None, text: str | None, config: BuildConfig
) -> tuple[str | None, str]:
    mode = config.captioner
    if mode in ("auto", "metadata") and isinstance(scene, dict):
        from flowstudio.worlds.captions import caption
        from flowstudio.worlds.shapes import SceneSpec

        return caption(SceneSpec.from_dict(scene["spec"])), "metadata"
    if mode in ("auto", "sidecar") and text:
        return text, "sidecar"
    if mode == "model" or (mode == "auto" and config.caption_model):
        return model_captioner(str(config.caption_model), config.device)(clip) or None, "model"
    return None, mode


def segment_signature(segment: dict[str, Any]) -> np.ndarray:
    """The pHash signature ``(frames, 64)`` bool stored in a segment record."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(segment["signature"]), np.uint8))
    return bits.reshape(-1, 64).astype(bool)
