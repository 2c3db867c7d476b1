"""The pair stage of ``flowstudio data build`` in float32 and in bfloat16 (issue 17, item 1): does the
cheaper dtype keep as many pairs, and how much faster does it edit?

On one ShapeWorld footage folder, in one run, one in-process worker each, from empty output folders:
the same clips edited with ``--config``'s settings, once per ``--dtype``. Reports pairs kept (per edit
type), the first failed check of the rejected ones, the mean PSNR against the true target, and edits
per minute with its ratio to the first dtype. On a CPU with AVX512-BF16 (or AMX) bf16 matrix products
are faster; elsewhere they may be slower. Writes ``benchmarks/results/<tag>.{json,md}``.

    python benchmarks/data_pairs_dtype.py --videos 12 --seed 1 --config configs/data/shapeworld.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
from pathlib import Path

import torch

from flowstudio import __version__
from flowstudio.data.build import build
from flowstudio.data.config import load_build_config
from flowstudio.data.footage import make_footage

RESULTS = Path(__file__).parent / "results"


def _db(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--config", default="configs/data/shapeworld.yaml")
    parser.add_argument("--dtype", action="append", default=None, help="float32, bfloat16 (repeatable)")
    parser.add_argument("--tag", default="data_pairs_dtype")
    args = parser.parse_args()
    dtypes = args.dtype or ["float32", "bfloat16"]
    base = load_build_config(args.config)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        footage = work / "footage"
        make_footage(footage, args.videos, args.seed, progress=False)
        for dtype in dtypes:
            sheet = build(
                footage, work / dtype, dataclasses.replace(base, dtype=dtype), workers=1, progress=False
            )
            timing = sheet["timing"]["pairs"]
            rows.append(
                {
                    "dtype": dtype,
                    "pairs_tried": sheet["pairs_tried"],
                    "pairs_kept": sheet["pairs_kept"],
                    "per_edit_type": sheet["per_edit_type"],
                    "checks_failed": sheet["checks_failed"],
                    "truth_psnr_mean": sheet["truth_psnr_mean"],
                    "pair_stage_seconds": timing["seconds"],
                    "edits_per_minute": round(60 * sheet["pairs_tried"] / timing["seconds"], 2),
                }
            )
            print(json.dumps(rows[-1]))
    for row in rows:
        row["speedup"] = round(row["edits_per_minute"] / rows[0]["edits_per_minute"], 2)
    result = {
        "benchmark": "data_pairs_dtype",
        "settings": {**vars(args), "dtypes": dtypes, "build": base.to_dict()},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "flowstudio": __version__,
        },
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# data build, pair stage: float32 against bfloat16",
        "",
        f"`python benchmarks/data_pairs_dtype.py --videos {args.videos} --seed {args.seed} --config "
        f"{args.config}` ({torch.get_num_threads()} thread(s), {platform.machine()}, "
        f"torch {torch.__version__}); "
        "one in-process worker; speed-up against the first row of the same run.",
        "",
        "| dtype | kept | colour | background | failed checks | truth PSNR kept / rejected | edits/min "
        "| speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        types = r["per_edit_type"]
        cell = {
            t: f"{types[t]['kept']}/{types[t]['tried']}" if t in types else "-"
            for t in ("color", "background")
        }
        failed = ", ".join(f"{k} {v}" for k, v in sorted(r["checks_failed"].items())) or "none"
        psnr = r["truth_psnr_mean"]
        lines.append(
            f"| {r['dtype']} | {r['pairs_kept']}/{r['pairs_tried']} | {cell['color']} | {cell['background']} "
            f"| {failed} | {_db(psnr.get('kept'))} / {_db(psnr.get('rejected'))} "
            f"| {r['edits_per_minute']} | {r['speedup']}x |"
        )
    (RESULTS / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
