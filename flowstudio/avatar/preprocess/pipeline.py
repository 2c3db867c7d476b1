"""The seven steps per clip, the resumable run over a folder, and the Ray / in-process executors.

Output folder::

    OUT/clips/<clip_id>/<clip_id>_f<start>.mp4   aligned crop, 25 fps, 16 kHz mono AAC
    OUT/clips/<clip_id>/<clip_id>_f<start>.npz   audio (int16, 16 kHz), audio_features (50 Hz),
                                                 structure (25 Hz, when asked), latents (toy codec),
                                                 mouth + loudness (the sync signals), crop windows,
                                                 source_frames (input frame number of each frame)
    OUT/done/<clip_id>.json      the clip's done-record: written last, atomically
    OUT/manifest.jsonl           one line per kept segment, with its split
    OUT/splits.json, OUT/report.json, OUT/report.md

A clip is done when its done-record exists with the settings' digest; a re-run skips it. A clip
killed mid-way has no done-record and is redone from scratch (its folder is cleared first), so
``kill -9`` then re-run gives the same files as an uninterrupted run. The manifest, splits and
report are rebuilt from all done-records at the end of every run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from flowstudio.avatar.preprocess import detect, features, media, sync, track
from flowstudio.avatar.preprocess.config import PreprocessConfig
from flowstudio.avatar.preprocess.layouts import SourceClip, list_clips
from flowstudio.avatar.preprocess.manifest import write_outputs
from flowstudio.data import shots
from flowstudio.data.runner import backend_name, check_workers, done_record, run_tasks
from flowstudio.errors import FlowstudioError, InputError
from flowstudio.video import write_video
from flowstudio.worlds._writer import save_npz_atomic, write_text_atomic

logger = logging.getLogger(__name__)

FORMAT = "flowstudio.avatar.preprocess/1"


def _drop(stage: str, reason: str, frames: tuple[int, int], detail: str = "") -> dict[str, Any]:
    return {"stage": stage, "reason": reason, "frames": list(frames), "detail": detail}


def process_clip(source: SourceClip, root: str, out: str, config: PreprocessConfig) -> dict[str, Any]:
    """Run steps 1-7 on one input video; write its segments and its done-record; return the record."""
    out_dir = Path(out)
    record: dict[str, Any] = {
        "format": FORMAT,
        "clip_id": source.clip_id,
        "source": str(source.path.relative_to(root)),
        "identity": source.identity,
        "digest": config.digest(),
    }
    clip_dir = out_dir / "clips" / source.clip_id
    shutil.rmtree(clip_dir, ignore_errors=True)  # leftovers of an interrupted attempt
    try:
        media.probe(source.path, config)  # step 1
        decoded = media.decode(source.path, config)  # step 4 (video + audio rates), before cutting
        record.update(_segments(source, decoded, clip_dir, config))
        record["status"] = "ok"
    except media.Refused as refused:
        record.update(status="refused", stage=refused.stage, reason=refused.reason, detail=refused.detail)
    except FlowstudioError as error:  # e.g. --detector talkingshapes on a clip without ground truth
        record.update(status="refused", stage="error", reason=type(error).__name__, detail=str(error))
    done = out_dir / "done"
    done.mkdir(parents=True, exist_ok=True)
    write_text_atomic(done / f"{source.clip_id}.json", json.dumps(record, indent=1, sort_keys=True))
    return record


def _segments(source: SourceClip, decoded: media.Decoded, clip_dir: Path, config: PreprocessConfig) -> dict:
    fps, rate = config.fps, config.sample_rate
    samples_per_frame = int(round(rate / fps))
    min_frames = int(np.ceil(config.min_seconds * fps))
    cuts = shots.detect_cuts(decoded.frames, fps, threshold=config.shot_threshold)  # step 2
    shot_ranges = shots.shots(len(decoded.frames), cuts)
    detector = detect.make_detector(config.detector, source.path, decoded.source_size)  # step 3
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    for shot_start, shot_end in shot_ranges:
        if shot_end - shot_start < min_frames:
            dropped.append(_drop("shots", "too_short", (shot_start, shot_end)))
            continue
        index = np.arange(shot_start, shot_end)
        probe_at = index[:: config.detect_every]
        found = detector.detect(decoded.frames[probe_at], decoded.source_indices[probe_at])
        detections: list[list[detect.Box]] = [[] for _ in index]
        for i, boxes in zip(probe_at - shot_start, found, strict=True):
            detections[i] = boxes
        boxes = track.fill_gaps(track.track_boxes(detections), max(config.max_gap, config.detect_every - 1))
        runs = track.face_runs(boxes)
        if not runs:
            dropped.append(_drop("faces", "no_face", (shot_start, shot_end)))
            continue
        for run_start, run_end in runs:
            span = (shot_start + run_start, shot_start + run_end)
            if run_end - run_start < min_frames:
                dropped.append(_drop("faces", "too_short", span))
                continue
            result = _segment(source, decoded, boxes[run_start:run_end], span, clip_dir, config,
                              samples_per_frame, min_frames)  # fmt: skip
            (kept if "id" in result else dropped).append(result)
    return {"shots": len(shot_ranges), "cuts": cuts, "segments": kept, "dropped": dropped}


def _segment(
    source: SourceClip,
    decoded: media.Decoded,
    boxes: np.ndarray,
    span: tuple[int, int],
    clip_dir: Path,
    config: PreprocessConfig,
    samples_per_frame: int,
    min_frames: int,
) -> dict[str, Any]:
    start, end = span
    windows = track.crop_windows(boxes, crop_scale=config.crop_scale, smooth_sigma=config.smooth_sigma)
    crops = track.crop_frames(decoded.frames[start:end], windows, config.size)
    audio = decoded.audio[start * samples_per_frame : end * samples_per_frame]
    # step 5: sync check on the whole face run, then trim by the measured offset
    if config.syncnet_path:
        sync.SyncNetWeights(config.syncnet_path).evaluate()  # raises: not implemented (said in the guide)
    mouth = sync.mouth_signal_pixels(crops)
    loudness = sync.loudness_envelope(audio, config.sample_rate, config.fps, len(crops))
    measured = sync.estimate_offset(mouth, loudness, config.sync_max_offset, "pixels")
    if measured.confidence < config.sync_min_confidence:
        return _drop(
            "sync", "too_weak", span, f"confidence {measured.confidence:.3f} at offset {measured.offset}"
        )
    shift = sync.correction(measured.offset, config.sync_tolerance)
    (a, b), audio = sync.apply_correction((0, len(crops)), audio, shift, samples_per_frame)
    # the toy codec (like the Wan VAE) packs 4 frames per latent frame: keep a multiple of 4
    b = a + (b - a) // 4 * 4
    if b - a < min_frames:
        return _drop("sync", "too_short_after_correction", span, f"{b - a} frames left after shift {shift}")
    crops, windows = crops[a:b], windows[a:b]
    audio = audio[: (b - a) * samples_per_frame]
    source_frames = decoded.source_indices[start + a : start + b]
    # the loudness of the audio as kept (after the trim), so mouth[t] and loudness[t] share a time
    mouth = mouth[a:b]
    loudness = sync.loudness_envelope(audio, config.sample_rate, config.fps, b - a)
    # step 6 and 7
    audio_features = features.audio_features(audio, config)
    structure = features.structure(crops, source_frames, source.path, config)
    latents = features.vae_latents(crops, config)
    segment_id = f"{source.clip_id}_f{start + a:06d}"
    clip_dir.mkdir(parents=True, exist_ok=True)
    video = clip_dir / f"{segment_id}.mp4"
    write_video(video, crops, config.fps, audio=audio, audio_rate=config.sample_rate, preset="veryfast")
    arrays: dict[str, np.ndarray] = {
        "audio": np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16),
        "audio_features": audio_features,
        "mouth": mouth.astype(np.float32),
        "loudness": loudness.astype(np.float32),
        "crop_windows": windows.astype(np.float32),
        "source_frames": source_frames.astype(np.int64),
    }
    if structure is not None:
        arrays["structure"] = structure
    if latents is not None:
        arrays["latents"] = latents
    save_npz_atomic(clip_dir / f"{segment_id}.npz", arrays)
    return {
        "id": segment_id,
        "clip_id": source.clip_id,
        "identity": source.identity,
        "source": str(source.path.name),
        "start_frame": start + a,
        "end_frame": start + b,
        "num_frames": b - a,
        "seconds": round((b - a) / config.fps, 4),
        "fps": config.fps,
        "size": config.size,
        "sample_rate": config.sample_rate,
        "video": str(video.relative_to(clip_dir.parent.parent)),
        "arrays": str((clip_dir / f"{segment_id}.npz").relative_to(clip_dir.parent.parent)),
        "sync": {**measured.to_dict(), "shift_frames": shift},
        "sources": {
            "detector": config.detector,
            "audio_features": config.audio_features,
            "audio_features_shape": list(audio_features.shape),
            "structure": config.structure,
            "vae": f"toy_codec_stride{config.codec_stride}" if config.vae == "toy" else "none",
        },
    }


def _is_done(out: Path, source: SourceClip, digest: str) -> dict[str, Any] | None:
    return done_record(
        out / "done" / f"{source.clip_id}.json",
        digest,
        lambda record: [out / s[key] for s in record.get("segments", []) for key in ("video", "arrays")],
    )


def preprocess(
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: PreprocessConfig,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Preprocess every video under ``in_dir`` into ``out_dir``; returns the report (also written).

    Args:
        workers: 1 runs in this process (no Ray); more start a local Ray with that many CPUs, one
            task per clip; with ``ray_address`` the tasks go to that cluster.
    """
    check_workers(workers)
    root, out = Path(in_dir).resolve(), Path(out_dir).resolve()
    if out == root or root in out.parents:
        raise InputError(f"output folder {out} must not be inside the input folder {root}")
    clips, layout = list_clips(root, config.layout)
    if not clips:
        raise InputError(f"no video files ({', '.join(('.mp4', '.mov', '.mkv', '...'))}) under {root}")
    out.mkdir(parents=True, exist_ok=True)
    features.load_extractors(config)  # a bad weight folder fails here, before any clip
    if config.syncnet_path:
        sync.SyncNetWeights(config.syncnet_path)
    digest = config.digest()
    records, todo = [], []
    for clip in clips:
        done = _is_done(out, clip, digest)
        (records.append(done) if done is not None else todo.append(clip))
    tic = time.perf_counter()
    with tqdm(
        total=len(clips), initial=len(records), desc="preprocess", unit="clip", disable=not progress
    ) as bar:
        backend = backend_name(workers, ray_address)
        records += run_tasks(
            process_clip, todo, (str(root), str(out), config), workers=workers, ray_address=ray_address,
            bar=bar, extra="preprocess",
        )  # fmt: skip
    seconds = time.perf_counter() - tic
    rate = round(60 * len(todo) / seconds, 2) if todo and seconds else None
    timing = {"processed": len(todo), "skipped_done": len(clips) - len(todo), "seconds": round(seconds, 2),
              "workers": workers, "backend": backend, "clips_per_minute": rate}  # fmt: skip
    settings = {**config.to_dict(), "layout_used": layout, "digest": digest}
    return write_outputs(out, records, settings, timing)
