"""The pair stage of ``flowstudio data build`` under several settings (issue 17, item 1): how many
pairs does each keep, and how fast does it edit?

On one ShapeWorld footage folder, in one run, one in-process worker each, from empty output folders:
the same clips edited with ``--config``'s settings changed per ``--variant``. Reports pairs kept (per
edit type), the first failed check of the rejected ones, the mean PSNR against the true target, edits
per minute, and pairs per minute with their ratios to the first variant. Writes
``benchmarks/results/<tag>.{json,md}``.

A variant is ``LABEL`` or ``LABEL:key=value;key=value`` over the config (values read as YAML; dotted
keys reach into ``edit_options``). float32 against bfloat16 (the default variants)::

    python benchmarks/data_pairs_compare.py --videos 12 --seed 1 --config configs/data/shapeworld.yaml

The teacher's 10-step edits against a distilled 4-step student's few-step editor (the student's own
steps: ``edit_options.steps=null`` drops the config's 10)::

    python benchmarks/data_pairs_compare.py --videos 12 --seed 1 --tag data_pairs_student \\
        --variant teacher --variant "student:model=RUN/student;edit_options.steps=null"
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from _results import write_results

from flowstudio.data.build import build
from flowstudio.data.config import BuildConfig, load_build_config
from flowstudio.data.footage import make_footage

DEFAULT_VARIANTS = ("float32", "bfloat16:dtype=bfloat16")


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``LABEL:key=value;key=value`` -> (label, {key: value}); values read as YAML (``null`` drops)."""
    label, _, rest = text.partition(":")
    changes: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(";"))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"variant {text!r}: write key=value pairs separated by ';'")
        changes[key.strip()] = yaml.safe_load(value)
    return label.strip(), changes


def apply(base: BuildConfig, changes: dict[str, Any]) -> BuildConfig:
    """``base`` with the variant's changes; ``edit_options.KEY`` sets (or, with null, removes) one
    edit option."""
    top: dict[str, Any] = {}
    options = copy.deepcopy(base.edit_options)
    for key, value in changes.items():
        if key.startswith("edit_options."):
            name = key.split(".", 1)[1]
            if value is None:
                options.pop(name, None)
            else:
                options[name] = value
        else:
            top[key] = value
    return dataclasses.replace(base, edit_options=options, **top)


def _db(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--config", default="configs/data/shapeworld.yaml")
    parser.add_argument("--variant", action="append", default=None, help="LABEL[:key=value;...] (repeatable)")
    parser.add_argument("--tag", default="data_pairs_dtype")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    base = load_build_config(args.config)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        footage = work / "footage"
        make_footage(footage, args.videos, args.seed, progress=False)
        for index, (label, changes) in enumerate(variants):
            config = apply(base, changes)
            sheet = build(footage, work / f"v{index}", config, workers=1, progress=False)
            seconds = sheet["timing"]["pairs"]["seconds"]
            rows.append(
                {
                    "variant": label,
                    "changes": changes,
                    "pairs_tried": sheet["pairs_tried"],
                    "pairs_kept": sheet["pairs_kept"],
                    "per_edit_type": sheet["per_edit_type"],
                    "checks_failed": sheet["checks_failed"],
                    "truth_psnr_mean": sheet["truth_psnr_mean"],
                    "pair_stage_seconds": seconds,
                    "edits_per_minute": round(60 * sheet["pairs_tried"] / seconds, 2),
                    "pairs_per_minute": round(60 * sheet["pairs_kept"] / seconds, 2),
                }
            )
            print(json.dumps(rows[-1]))
    for row in rows:
        row["speedup"] = round(row["edits_per_minute"] / rows[0]["edits_per_minute"], 2)
        row["pairs_speedup"] = round(row["pairs_per_minute"] / max(rows[0]["pairs_per_minute"], 1e-9), 2)
    command = " ".join(
        ["python benchmarks/data_pairs_compare.py", f"--videos {args.videos} --seed {args.seed}",
         f"--config {args.config}", f"--tag {args.tag}"]
        + [f'--variant "{v}"' for v in (args.variant or [])]
    )  # fmt: skip
    lines = [
        f"# data build, pair stage: {' against '.join(label for label, _ in variants)}",
        "",
        f"`{command}` ({torch.get_num_threads()} thread(s), torch {torch.__version__}); one in-process "
        "worker; speed-ups against the first row of the same run.",
        "",
        "| variant | kept | colour | background | failed checks | truth PSNR kept / rejected | edits/min "
        "| speed-up | pairs/min | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
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
            f"| {r['variant']} | {r['pairs_kept']}/{r['pairs_tried']} "
            f"| {cell['color']} | {cell['background']} "
            f"| {failed} | {_db(psnr.get('kept'))} / {_db(psnr.get('rejected'))} "
            f"| {r['edits_per_minute']} | {r['speedup']}x | {r['pairs_per_minute']} | {r['pairs_speedup']}x |"
        )
    settings = {**vars(args), "variants": [list(v) for v in variants], "build": base.to_dict()}
    markdown = write_results(
        args.tag, {"benchmark": "data_pairs_compare", "settings": settings, "rows": rows}, lines
    )
    print(markdown.read_text())


if __name__ == "__main__":
    main()
