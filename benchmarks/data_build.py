"""Throughput of ``flowstudio data build`` (issue 17, item 1): clips per minute with 1 and 2 local workers.

On one ShapeWorld footage folder, in one run, from empty output folders each time:

- **clips stage** (probe, decode, cuts, windows, filters, pHash, captions) over ``--videos`` videos;
- **pair stage** (the editing engine + the benchmark's checks) over the first ``--pair-videos``
  videos' clips, with the settings of ``--config``;

each with ``workers=1`` in this process, ``workers=1`` on Ray (the cost of Ray itself) and
``workers=2`` on a local Ray. The figure that counts is the ratio of 2 Ray workers to 1 in-process
worker, on an otherwise idle machine. Writes ``benchmarks/results/<tag>.{json,md}``.

    python benchmarks/data_build.py --videos 40 --pair-videos 6 --config configs/data/shapeworld.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

from _results import write_results

from flowstudio.data.build import build
from flowstudio.data.config import load_build_config
from flowstudio.data.footage import make_footage

BACKENDS = (("in-process, 1 worker", 1, False), ("Ray, 1 worker", 1, True), ("Ray, 2 workers", 2, True))


def _run(footage: Path, work: Path, config, workers: int, ray: bool) -> dict:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    if ray:
        # a local Ray started here with ``workers`` CPUs (one task per CPU at a time); the build uses
        # the running Ray (any workers > 1 sends the tasks to Ray), so one worker on Ray is measurable too
        import ray as ray_module

        ray_module.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        try:
            return build(footage, out, config, workers=2, progress=False)
        finally:
            ray_module.shutdown()
    return build(footage, out, config, workers=1, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--pair-videos", type=int, default=6)
    parser.add_argument("--config", default="configs/data/shapeworld.yaml")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--tag", default="data_build")
    args = parser.parse_args()
    config = load_build_config(args.config)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        footage = work / "footage"
        make_footage(footage, args.videos, args.seed, progress=False)
        subset = work / "subset"
        subset.mkdir()
        for index in range(args.pair_videos):
            for suffix in (".mp4", ".json"):
                name = f"video_{index:05d}{suffix}"
                shutil.copy(footage / name, subset / name)
        for label, workers, ray in BACKENDS:
            clips = _run(footage, work, load_build_config(args.config, pairs=False), workers, ray)
            pairs = _run(subset, work, config, workers, ray)
            timing_clips, timing_pairs = clips["timing"]["clips"], pairs["timing"]["pairs"]
            clip_count = clips["clips_kept"] + clips["clips_dropped"].get("dedup/near_duplicate", 0)
            rows.append(
                {
                    "backend": label,
                    "workers": workers,
                    "clips_stage_seconds": timing_clips["seconds"],
                    "videos": args.videos,
                    "clips_made": clip_count,
                    "clips_per_minute": round(60 * clip_count / timing_clips["seconds"], 1),
                    "pair_stage_seconds": timing_pairs["seconds"],
                    "clips_edited": timing_pairs["clips_edited"],
                    "edited_clips_per_minute": timing_pairs["clips_per_minute"],
                    "pairs_kept": pairs["pairs_kept"],
                }
            )
            print(json.dumps(rows[-1]))
    base = rows[0]
    for row in rows:
        row["clips_speedup"] = round(row["clips_per_minute"] / base["clips_per_minute"], 2)
        row["pairs_speedup"] = round(row["edited_clips_per_minute"] / base["edited_clips_per_minute"], 2)
    result = {
        "benchmark": "data_build",
        "settings": {**vars(args), "build": config.to_dict()},
        "rows": rows,
    }
    lines = [
        "# data build throughput",
        "",
        f"`python benchmarks/data_build.py --videos {args.videos} --pair-videos {args.pair_videos} "
        f"--config {args.config}` on {os.cpu_count()} CPUs ({platform.machine()}); speed-ups against the "
        "in-process worker of the same run.",
        "",
        "| backend | clips stage: clips/min | speed-up | pair stage: edits/min | speed-up | pairs kept |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['backend']} | {r['clips_per_minute']} | {r['clips_speedup']}x "
            f"| {r['edited_clips_per_minute']} | {r['pairs_speedup']}x "
            f"| {r['pairs_kept']} of {r['clips_edited']} |"
            for r in rows
        ],
    ]
    print(write_results(args.tag, result, lines).read_text())


if __name__ == "__main__":
    main()
