"""Step 7 (end of run): manifest, identity splits, and the report (counts per stage and reason).

Everything here is rebuilt from the per-clip done-records (``OUT/done/<clip_id>.json``), sorted by
clip id, so the files are the same whatever order the workers finished in and however often the
run was interrupted. Wall-clock times live only in ``report.json``'s ``timing`` block.

Splits are by identity: identities are ordered by a seeded hash, the first ``ceil(val x n)`` go to
val, the next ``ceil(test x n)`` to test (each at least one once there are three identities), the
rest to train; a segment inherits its clip's identity, so no identity is in two splits.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from flowstudio.worlds._writer import write_text_atomic

SPLITS = ("train", "val", "test")


def assign_splits(identities: list[str], fractions: tuple[float, float], seed: int) -> dict[str, str]:
    """identity -> ``train`` / ``val`` / ``test``."""
    unique = sorted(set(identities), key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n = len(unique)
    n_val = math.ceil(fractions[0] * n) if n >= 3 and fractions[0] > 0 else 0
    n_test = math.ceil(fractions[1] * n) if n >= 3 and fractions[1] > 0 else 0
    out = {}
    for i, identity in enumerate(unique):
        out[identity] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    return out


def write_outputs(
    out: Path, records: list[dict[str, Any]], config: dict[str, Any], timing: dict[str, Any]
) -> dict:
    """Write ``manifest.jsonl``, ``splits.json``, ``report.json`` and ``report.md``; return the report."""
    records = sorted(records, key=lambda r: r["clip_id"])
    segments = [s for r in records for s in r.get("segments", [])]
    split_of = assign_splits(
        [s["identity"] for s in segments], tuple(config["split_fractions"]), config["split_seed"]
    )
    lines = []
    for segment in sorted(segments, key=lambda s: s["id"]):
        lines.append(json.dumps({**segment, "split": split_of[segment["identity"]]}, sort_keys=True))
    write_text_atomic(out / "manifest.jsonl", "".join(line + "\n" for line in lines))
    splits = {name: sorted(s["id"] for s in segments if split_of[s["identity"]] == name) for name in SPLITS}
    identities = {name: sorted(i for i, v in split_of.items() if v == name) for name in SPLITS}
    write_text_atomic(
        out / "splits.json", json.dumps({"segments": splits, "identities": identities}, indent=1)
    )
    report = _report(records, segments, splits, config)
    report["timing"] = timing
    write_text_atomic(out / "report.json", json.dumps(report, indent=1, sort_keys=True))
    write_text_atomic(out / "report.md", _markdown(report))
    return report


def _report(records: list[dict], segments: list[dict], splits: dict, config: dict) -> dict[str, Any]:
    refused: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    corrected = 0
    for record in records:
        if record["status"] == "refused":
            refused[f"{record['stage']}/{record['reason']}"] += 1
        for drop in record.get("dropped", []):
            dropped[f"{drop['stage']}/{drop['reason']}"] += 1
    corrected = sum(1 for s in segments if s["sync"]["shift_frames"] != 0)
    return {
        "inputs": len(records),
        "clips_with_segments": sum(1 for r in records if r.get("segments")),
        "clips_refused": dict(sorted(refused.items())),
        "clips_without_segments": sum(1 for r in records if r["status"] == "ok" and not r.get("segments")),
        "shots": sum(r.get("shots", 0) for r in records),
        "segments_dropped": dict(sorted(dropped.items())),
        "segments_kept": len(segments),
        "segments_sync_corrected": corrected,
        "seconds_kept": round(sum(s["seconds"] for s in segments), 2),
        "splits": {name: len(ids) for name, ids in splits.items()},
        "config": config,
    }


def _markdown(report: dict[str, Any]) -> str:
    rows = [
        "# Preprocessing report",
        "",
        f"- input videos: {report['inputs']}",
        f"- shots found: {report['shots']}",
        f"- segments kept: {report['segments_kept']} ({report['seconds_kept']} s), "
        f"sync-corrected: {report['segments_sync_corrected']}",
        "- splits (segments): " + ", ".join(f"{k} {v}" for k, v in report["splits"].items()),
        "",
        "| stage/reason | clips refused |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in report["clips_refused"].items()],
        "",
        "| stage/reason | segments dropped |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in report["segments_dropped"].items()],
        "",
    ]
    timing = report.get("timing") or {}
    if timing:
        rows += [
            f"Processed {timing.get('processed', 0)} clips in {timing.get('seconds', 0)} s "
            f"with {timing.get('workers', 1)} worker(s) ({timing.get('backend', '')}).",
            "",
        ]
    return "\n".join(rows)
