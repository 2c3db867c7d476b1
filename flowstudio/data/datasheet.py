"""The dataset's manifest (Parquet) and datasheet (counts per stage and reason, examples grid), rebuilt
from the done-records at the end of every run, sorted by id, so the files do not depend on worker
order or on how often the run was interrupted. Wall-clock times live only in ``datasheet.json``'s
``timing`` block.

Files::

    OUT/manifest.parquet    one row per kept pair (source clip, target clip, prompts, checks)
    OUT/clips.parquet       one row per kept clip (after dedup): the clips without pairs too
    OUT/datasheet.json      counts per stage and reason, per edit type, settings, timing
    OUT/datasheet.md        the same as a page, with the grid
    OUT/examples.png        source / edit frames of kept pairs, and of rejected ones with the reason
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from flowstudio.worlds._writer import write_text_atomic

PAIR_COLUMNS = (
    "id",
    "video_id",
    "edit_type",
    "source_prompt",
    "target_prompt",
    "source_video",
    "target_video",
    "num_frames",
    "height",
    "width",
    "fps",
    "keep",
    "warp_ratio",
    "attribute_read",
    "attribute_expected",
    "truth_psnr",
    "caption_source",
)


def _pair_row(pair: dict[str, Any], segment: dict[str, Any]) -> dict[str, Any]:
    checks = pair["checks"]
    keep = checks["keep"].get("psnr", checks["keep"].get("ssim"))
    return {
        "id": pair["id"],
        "video_id": segment["video_id"],
        "edit_type": pair["edit_type"],
        "source_prompt": pair["source_prompt"],
        "target_prompt": pair["target_prompt"],
        "source_video": segment["video"],
        "target_video": pair["target_video"],
        "num_frames": segment["num_frames"],
        "height": segment["height"],
        "width": segment["width"],
        "fps": segment["fps"],
        "keep": None if keep is None else float(keep),
        "warp_ratio": checks["temporal"]["ratio"],
        "attribute_read": str(checks["attribute"].get("read", checks["attribute"].get("clip_gain"))),
        "attribute_expected": str(checks["attribute"].get("expected", pair["target_prompt"])),
        "truth_psnr": checks.get("truth_psnr"),
        "caption_source": segment["caption_source"],
    }


def write_parquet(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """``rows`` as a Parquet table (written to a temporary name, then moved into place)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.string()) for c in columns})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def summarise(
    segment_records: list[dict[str, Any]],
    duplicates: dict[str, str],
    pair_records: list[dict[str, Any]],
    defects: dict[str, str],
) -> dict[str, Any]:
    """Counts per stage and reason: videos refused, clips dropped, duplicates, pairs kept and rejected."""
    refused: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for record in segment_records:
        if record["status"] != "ok":
            refused[f"{record['stage']}/{record['reason']}"] += 1
        for drop in record.get("dropped", []):
            dropped[f"{drop['stage']}/{drop['reason']}"] += 1
    dropped["dedup/near_duplicate"] += len(duplicates)
    clips = sum(len(r.get("segments", [])) for r in segment_records) - len(duplicates)
    pairs = [p for r in pair_records for p in r.get("pairs", [])]
    rejected: Counter[str] = Counter(f"{p['stage']}/{p['reason']}" for p in pairs if not p["kept"])
    failed_checks: Counter[str] = Counter(k for p in pairs if not p["kept"] for k in p.get("failed", []))
    # which attribute the `others` check saw change (a pair may change several)
    changed: Counter[str] = Counter(
        name
        for p in pairs
        for name, read in p.get("checks", {}).get("others", {}).get("reads", {}).items()
        if read["source"] != read["edit"]
    )
    per_type: dict[str, dict[str, int]] = {}
    for pair in pairs:
        if "edit_type" in pair:
            row = per_type.setdefault(pair["edit_type"], {"tried": 0, "kept": 0})
            row["tried"] += 1
            row["kept"] += int(pair["kept"])
    truth = {
        state: [
            p["checks"]["truth_psnr"]
            for p in pairs
            if "checks" in p and p["kept"] == (state == "kept") and p["checks"].get("truth_psnr") is not None
        ]
        for state in ("kept", "rejected")
    }
    errors = Counter(r["reason"] for r in pair_records if r["status"] != "ok")
    return {
        "videos": len(segment_records),
        "videos_refused": dict(sorted(refused.items())),
        "videos_with_clips": sum(1 for r in segment_records if r.get("segments")),
        "shots": sum(r.get("shots", 0) for r in segment_records),
        "clips_dropped": dict(sorted((k, v) for k, v in dropped.items() if v)),
        "clips_kept": clips,
        "pairs_tried": sum(1 for p in pairs if "checks" in p),
        "pairs_kept": sum(1 for p in pairs if p["kept"]),
        "pairs_rejected": dict(sorted(rejected.items())),
        "checks_failed": dict(sorted(failed_checks.items())),
        "others_changed": dict(sorted(changed.items())),
        "pair_tasks_failed": dict(errors),
        "per_edit_type": dict(sorted(per_type.items())),
        "truth_psnr_mean": {k: (round(float(np.mean(v)), 2) if v else None) for k, v in truth.items()},
        "defects": defects,
    }


def _defective_frames(sidecar: dict[str, Any]) -> tuple[int, int] | None:
    """First and last frame of the shot a shot defect changed; ``None`` for other defects."""
    from flowstudio.data.footage import defective_shot

    k = defective_shot(sidecar)
    if k is None:
        return None
    frames = [int(shot["frames"]) for shot in sidecar["shots"]]
    start = sum(frames[:k])
    return start, start + frames[k] - 1


def _uncaught(sidecar: dict[str, Any], record: dict[str, Any]) -> str:
    """``missed`` when a kept clip holds defective frames; ``not sampled`` when every kept clip lies
    outside the defective shot (nothing defective entered the dataset, e.g. a missed cut put all of a
    shot's windows in the clean one)."""
    span = _defective_frames(sidecar)
    if span is None:
        return "missed"
    windows = [seg.get("source_frames") for seg in record.get("segments", [])]
    if windows and all(w is not None and (w[1] < span[0] or w[0] > span[1]) for w in windows):
        return "not sampled"
    return "missed"


def defects_caught(
    segment_records: list[dict[str, Any]], duplicates: dict[str, str], root: Path
) -> dict[str, str]:
    """For ShapeWorld footage: each made defect (named in its sidecar) -> the stages that dropped its
    clips, else ``not sampled`` (no kept clip holds a defective frame) or ``missed``."""
    caught: dict[str, str] = {}
    dup_videos = {clip.rsplit("_f", 1)[0] for clip in duplicates}
    for record in segment_records:
        try:
            sidecar = json.loads((root / record["source"]).with_suffix(".json").read_text())
        except (OSError, ValueError):
            continue
        defect = sidecar.get("defect") if isinstance(sidecar, dict) else None
        if not defect:
            continue
        if record["status"] != "ok":
            how = f"{record['stage']}/{record['reason']}"
        else:  # every stage that dropped some of its clips (a clean shot of it may be a duplicate too)
            stages = {f"{d['stage']}/{d['reason']}" for d in record.get("dropped", [])}
            stages |= {"dedup/near_duplicate"} if record["video_id"] in dup_videos else set()
            how = ", ".join(sorted(stages)) or _uncaught(sidecar, record)
        caught[f"{record['video_id']} ({defect})"] = how
    return dict(sorted(caught.items()))


def examples_grid(
    out: Path, pairs: list[dict[str, Any]], segments: dict[str, dict[str, Any]], path: Path
) -> bool:
    """Source / edit frames (first, middle, last) of up to 6 kept pairs and 3 rejected ones (titled with
    the check they failed); False when no pair was edited."""
    from flowstudio.video import read_video

    kept = [p for p in pairs if p["kept"]][:6]
    rejected = [p for p in pairs if not p["kept"] and "edited_video" in p][:3]
    rows = kept + rejected
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 2, figsize=(7.2, 1.35 * len(rows)), squeeze=False)
    for row, pair in zip(axes, rows, strict=True):
        source = read_video(out / segments[pair["segment"]]["video"]).frames
        target = read_video(out / (pair.get("target_video") or pair["edited_video"])).frames
        picks = [0, len(source) // 2, len(source) - 1]
        verdict = "kept" if pair["kept"] else f"REJECTED ({', '.join(pair['failed'])})"
        for ax, clip, label in ((row[0], source, "source"), (row[1], target, f"edit, {verdict}")):
            ax.imshow(np.concatenate([clip[i] for i in picks], axis=1))
            ax.set_xticks([])
            ax.set_yticks([])
            text = pair["source_prompt"] if label == "source" else pair["target_prompt"]
            ax.set_title(f"{label}: {text[:44]}", fontsize=6)
    fig.suptitle("pairs: source | edit (frames 0, middle, last); kept, then rejected", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(
    out: Path,
    root: Path,
    segment_records: list[dict[str, Any]],
    duplicates: dict[str, str],
    pair_records: list[dict[str, Any]],
    settings: dict[str, Any],
    timing: dict[str, Any],
    complete: bool = True,
) -> dict[str, Any]:
    """Write the manifests, ``datasheet.json``/``.md`` and ``examples.png``; return the datasheet.

    ``complete`` False (a run stopped by its time budget) is said at the top of the datasheet."""
    segment_records = sorted(segment_records, key=lambda r: r["video_id"])
    pair_records = sorted(pair_records, key=lambda r: r["video_id"])
    segments = {
        s["id"]: s for r in segment_records for s in r.get("segments", []) if s["id"] not in duplicates
    }
    clip_rows = [
        {
            "id": s["id"],
            "video_id": s["video_id"],
            "video": s["video"],
            "caption": s["caption"],
            "caption_source": s["caption_source"],
            "start_frame": s["start_frame"],
            "num_frames": s["num_frames"],
            "height": s["height"],
            "width": s["width"],
            "fps": s["fps"],
            **s["measures"],
        }
        for s in sorted(segments.values(), key=lambda s: s["id"])
    ]
    write_parquet(out / "clips.parquet", clip_rows, ("id",))
    pairs = sorted((p for r in pair_records for p in r.get("pairs", [])), key=lambda p: p["segment"])
    rows = [_pair_row(p, segments[p["segment"]]) for p in pairs if p["kept"]]
    write_parquet(out / "manifest.parquet", rows, PAIR_COLUMNS)
    sheet = summarise(
        segment_records, duplicates, pair_records, defects_caught(segment_records, duplicates, root)
    )
    sheet["complete"] = complete
    sheet["duplicates"] = dict(sorted(duplicates.items()))
    sheet["settings"] = settings
    sheet["examples"] = examples_grid(out, pairs, segments, out / "examples.png")
    sheet["timing"] = timing
    write_text_atomic(out / "datasheet.json", json.dumps(sheet, indent=1, sort_keys=True))
    write_text_atomic(out / "datasheet.md", markdown(sheet))
    return sheet


def _table(title: str, counts: dict[str, Any], column: str = "count") -> list[str]:
    return [f"| {title} | {column} |", "|---|---|", *[f"| {k} | {v} |" for k, v in counts.items()], ""]


def markdown(sheet: dict[str, Any]) -> str:
    """The datasheet as a Markdown page."""
    lines = [
        "# Datasheet",
        "",
        *(
            []
            if sheet.get("complete", True)
            else [
                f"**Partial**: the run stopped at its time budget "
                f"({json.dumps(sheet['timing'].get('left'))}); "
                "the same command resumes it.",
                "",
            ]
        ),
        f"- input videos: {sheet['videos']} ({sheet['videos_with_clips']} with clips, "
        f"{sum(sheet['videos_refused'].values())} refused); shots found: {sheet['shots']}",
        f"- clips kept: {sheet['clips_kept']}",
        f"- pairs: {sheet['pairs_kept']} kept of {sheet['pairs_tried']} tried",
        "- burnt-in text: "
        + (
            f"checked with {sheet['settings']['text_model']}"
            if sheet["settings"].get("text_model")
            else "**not checked** (no text_model given)"
        ),
        f"- mean PSNR of the edit against the true target (ShapeWorld): kept "
        f"{sheet['truth_psnr_mean']['kept']} dB, rejected {sheet['truth_psnr_mean']['rejected']} dB",
        "",
        *_table("videos refused (stage/reason)", sheet["videos_refused"]),
        *_table("clips dropped (stage/reason)", sheet["clips_dropped"]),
        *_table("pairs rejected (first failed check)", sheet["pairs_rejected"]),
        *_table("checks failed (every failed check)", sheet["checks_failed"]),
        *_table("`others`: the attribute that read differently on the edit", sheet.get("others_changed", {})),
        "| edit type | tried | kept |",
        "|---|---|---|",
        *[f"| {k} | {v['tried']} | {v['kept']} |" for k, v in sheet["per_edit_type"].items()],
        "",
    ]
    if sheet["defects"]:
        lines += _table("made defect (footage sidecar)", sheet["defects"], "caught as")
    if sheet.get("examples"):
        lines += ["![kept pairs](examples.png)", ""]
    timing = sheet.get("timing") or {}
    if timing:
        lines += [f"Timing: {json.dumps(timing, sort_keys=True)}", ""]
    return "\n".join(lines)
