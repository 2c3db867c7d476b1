"""``flowstudio data build IN OUT``: folders of videos -> a source -> target pair dataset for distillation.

Stages (one task per input video, in this process or on Ray; see :mod:`flowstudio.data.runner`):

1. clips (:mod:`~flowstudio.data.segments`): probe and refuse broken files, decode, shot cuts
   (PySceneDetect), clips of ``frames`` frames at the model's size, filters, pHash, caption;
2. near duplicates (:mod:`~flowstudio.data.dedup`), over every clip of the run in id order, so a
   re-run drops the same ones;
3. pairs (:mod:`~flowstudio.data.pairs`): the editing engine and the benchmark's checks;
4. the manifests and the datasheet (:mod:`~flowstudio.data.datasheet`), rebuilt from the done-records.

Resumable after ``kill -9``: a video whose done-record carries the settings' digest (and, for pairs,
the same surviving clips) is skipped; one killed mid-way has no done-record and is redone from
scratch (its folder is cleared first), so the files equal an uninterrupted run's.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from flowstudio.data import dedup
from flowstudio.data.config import BuildConfig
from flowstudio.data.datasheet import write_outputs
from flowstudio.data.pairs import check_presets, make_pairs, model_path, pair_task_digest
from flowstudio.data.runner import backend_name, check_workers, done_record, run_tasks
from flowstudio.data.segments import process_video, segment_signature, video_id
from flowstudio.errors import InputError

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def list_videos(root: Path) -> list[str]:
    """Video files under ``root`` (recursively), as sorted relative paths."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
    )


def _segments_done(out: Path, vid: str, digest: str) -> dict[str, Any] | None:
    return done_record(
        out / "done" / "segments" / f"{vid}.json",
        digest,
        lambda record: [out / s["video"] for s in record.get("segments", [])],
    )


def _pairs_done(out: Path, vid: str, digest: str) -> dict[str, Any] | None:
    def files(record: dict[str, Any]) -> list[Path]:
        videos = (p.get("target_video") or p.get("edited_video") for p in record.get("pairs", []))
        return [out / video for video in videos if video]

    return done_record(out / "done" / "pairs" / f"{vid}.json", digest, files)


def find_duplicates(records: list[dict[str, Any]], max_distance: float) -> dict[str, str]:
    """``{clip id: id of the earlier clip it duplicates}`` over every clip, in id order."""
    clips = sorted((s for r in records for s in r.get("segments", [])), key=lambda s: s["id"])
    dropped = dedup.near_duplicates([segment_signature(s) for s in clips], max_distance)
    return {clips[i]["id"]: clips[j]["id"] for i, j in dropped.items()}


def build(
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: BuildConfig,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    progress: bool = True,
    max_minutes: float | None = None,
) -> dict[str, Any]:
    """Build the dataset of ``in_dir`` into ``out_dir``; returns the datasheet (also written).

    Args:
        max_minutes: start no new task after this many minutes; the manifests and datasheet then
            hold what is done (``complete: false``, with the videos left), and the same call resumes.
        workers: 1 runs in this process (no Ray); more start a local Ray with that many CPUs, one
            task per video; with ``ray_address`` the tasks go to that cluster (which must see both
            folders at the same paths).
    """
    check_workers(workers)
    root, out = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not root.is_dir():
        raise InputError(
            f"input folder {root} does not exist (make ShapeWorld footage: flowstudio data footage)"
        )
    if out == root or root in out.parents:
        raise InputError(f"output folder {out} must not be inside the input folder {root}")
    videos = list_videos(root)
    if not videos:
        raise InputError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) under {root}")
    if config.pairs:
        check_presets(config)
        if not Path(model_path(config)).is_dir():
            raise InputError(f"editing model folder {model_path(config)} not found (set model: PATH)")
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, Any] = {"workers": workers, "backend": backend_name(workers, ray_address)}
    deadline = time.monotonic() + 60 * max_minutes if max_minutes else None

    digest = config.segment_digest()
    segment_records: list[dict[str, Any]] = []
    todo: list[str] = []
    for relative in videos:
        done = _segments_done(out, video_id(root / relative, root), digest)
        (segment_records.append(done) if done is not None else todo.append(relative))
    done_before = len(segment_records)
    tic = time.perf_counter()
    with tqdm(
        total=len(videos), initial=len(segment_records), desc="clips", unit="video", disable=not progress
    ) as bar:
        segment_records += run_tasks(
            process_video,
            todo,
            (str(root), str(out), config),
            workers=workers,
            ray_address=ray_address,
            bar=bar,
            extra="preprocess",
            deadline=deadline,
        )
    seconds = time.perf_counter() - tic
    clips_left = len(videos) - len(segment_records)
    processed = len(segment_records) - done_before
    timing["clips"] = {
        "videos_processed": processed,
        "videos_skipped_done": done_before,
        "seconds": round(seconds, 2),
        "videos_per_minute": round(60 * processed / seconds, 2) if processed and seconds else None,
    }

    duplicates = find_duplicates(segment_records, config.dedup_max_distance)
    bare = [
        s["id"]
        for r in segment_records
        for s in r.get("segments", [])
        if s["id"] not in duplicates and not isinstance(s.get("world"), dict)
    ]
    if config.pairs and bare:
        blend = config.edit_options.get("blend")
        if isinstance(blend, dict) and blend.get("composite_mask") == "mask":
            raise InputError(
                f"{len(bare)} clips (e.g. {bare[0]}) have no object mask (no ShapeWorld metadata), but "
                "edit_options.blend.composite_mask is 'mask': use 'change' for your own clips; the clips "
                "made so far are kept and will be reused"
            )
        if not config.clip_model:
            raise InputError(
                f"{len(bare)} clips (e.g. {bare[0]}) have no ShapeWorld metadata, so the attribute check "
                "of their pairs needs CLIP: set clip_model (--clip-model PATH, a local CLIP folder), or "
                "build clips only with --no-pairs; the clips made so far are kept and will be reused"
            )
    pair_records: list[dict[str, Any]] = []
    pairs_left = 0
    if config.pairs and clips_left == 0:  # dedup needs every clip first: pairs start once all are made
        jobs = []
        for record in segment_records:
            kept = [s for s in record.get("segments", []) if s["id"] not in duplicates]
            if not kept:
                continue
            done = _pairs_done(out, record["video_id"], pair_task_digest(config, [s["id"] for s in kept]))
            (pair_records.append(done) if done is not None else jobs.append((record["video_id"], kept)))
        done_before = len(pair_records)
        tic = time.perf_counter()
        with tqdm(
            total=len(jobs) + len(pair_records),
            initial=len(pair_records),
            desc="pairs",
            unit="video",
            disable=not progress,
        ) as bar:
            pair_records += run_tasks(
                _pair_task,
                jobs,
                (str(out), config),
                workers=workers,
                ray_address=ray_address,
                bar=bar,
                extra="preprocess",
                deadline=deadline,
            )
        new = pair_records[done_before:]
        pairs_left = len(jobs) - len(new)
        seconds = time.perf_counter() - tic
        tried = sum(len(r["pairs"]) for r in new)
        timing["pairs"] = {
            "videos_processed": len(new),
            "clips_edited": tried,
            "seconds": round(seconds, 2),
            "clips_per_minute": round(60 * tried / seconds, 2) if tried and seconds else None,
        }
    settings = {
        **config.to_dict(),
        "model_used": model_path(config) if config.pairs else None,
        "segment_digest": digest,
        "input": str(root),
    }
    progress_left = {"videos_without_clips_yet": clips_left, "videos_without_pairs_yet": pairs_left}
    if config.pairs and clips_left:
        progress_left["videos_without_pairs_yet"] = (
            "all (the pair stage starts once every video has its clips)"
        )
    timing["left"] = progress_left
    sheet = write_outputs(
        out,
        root,
        segment_records,
        duplicates,
        pair_records,
        settings,
        timing,
        complete=clips_left == 0 and pairs_left == 0,
    )
    return sheet


def _pair_task(job: tuple[str, list[dict[str, Any]]], out: str, config: BuildConfig) -> dict[str, Any]:
    vid, segments = job
    return make_pairs(vid, segments, out, config)
