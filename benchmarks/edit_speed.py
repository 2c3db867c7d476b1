"""Model calls and wall time of each editing method against the baseline editor, in the same run.

Every configuration edits the same clip on the same checkpoint (default: the tiny random-weight
checkpoint, built on the fly) and is timed ``--repeats`` times (median). Reported per row: model
calls (transformer forwards), row evaluations (one CFG branch of one side at one point: the compute
spent; a batched forward of 4 rows costs ~4 rows on a large model), median wall time, and the ratios
to the baseline editor (DPM-Solver++ inversion + UniPC, same steps). On the tiny checkpoint the VAE
and Python overheads weigh as much as the transformer, so the wall-time ratios understate what the
row ratios predict for a real model; the row ratios are the portable number.

Writes ``benchmarks/results/edit_speed.{json,md}``.

    python benchmarks/edit_speed.py [--steps 20] [--repeats 3] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from flowstudio import __version__
from flowstudio.edit import (
    AttentionShareConfig,
    BlendConfig,
    FlowEditConfig,
    InjectionConfig,
    RescheduleConfig,
    edit,
)
from flowstudio.models.factory import build_tiny_checkpoint
from flowstudio.pipeline import WanVideoPipeline

logger = logging.getLogger("benchmarks.edit_speed")
RESULTS = Path(__file__).parent / "results"


def clip(frames: int = 9, height: int = 64, width: int = 64) -> np.ndarray:
    """A smooth moving gradient with a bright square, uint8 ``(T, H, W, 3)``."""
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for t in range(frames):
        frame = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 80)], -1)
        x0 = 8 + 2 * t
        frame[20:44, x0 : x0 + 20] = (220, 40, 40)
        out.append(frame)
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def configurations(steps: int) -> dict[str, dict]:
    """Name -> edit() options. Every row uses CFG on the target side (5.0), as a real edit does."""
    cfg = {"source_guidance": 1.0, "target_guidance": 5.0, "steps": steps}
    half = {**cfg, "steps": max(steps // 2, 1)}
    return {
        "baseline (dpm++2m inv + unipc)": {"method": "inversion", **cfg},
        "flowedit": {"method": "flowedit", **cfg, "source_guidance": 1.5},
        "flowedit n_max=70%": {
            "method": "flowedit",
            **cfg,
            "source_guidance": 1.5,
            "flowedit": FlowEditConfig(n_max=int(0.7 * steps)),
        },
        "rf-solver": {"method": "rf-solver", **cfg},
        "fireflow": {"method": "fireflow", **cfg},
        "fireflow, half steps": {"method": "fireflow", **half},
        "baseline + injection (cache)": {
            "method": "inversion",
            **cfg,
            "injection": InjectionConfig(end=0.5),
            "source_features": "cache",
        },
        "baseline + injection (recompute)": {
            "method": "inversion",
            **cfg,
            "injection": InjectionConfig(end=0.5),
            "source_features": "recompute",
        },
        "fireflow + K/V concat (cache) + blend": {
            "method": "fireflow",
            **cfg,
            "attention_share": AttentionShareConfig(end=0.5),
            "source_features": "cache",
            "blend": BlendConfig(),
            "box": (0, 16, 48, 48),
        },
        "baseline, partial inversion 0.6": {
            "method": "inversion",
            **cfg,
            "reschedule": RescheduleConfig(strength=0.6),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--model", type=Path, default=None, help="checkpoint folder (default: tiny random one)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: stable timings on a busy CPU)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    video = clip()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_tiny_checkpoint(Path(tmp) / "tiny", seed=0)
        pipe = WanVideoPipeline.from_pretrained(model, device="cpu")
        # Warm up (first-call allocations and kernel selection), not timed.
        edit(video, source_prompt="a red box", target_prompt="a blue box", model=pipe, steps=2)
        rows = []
        for name, options in configurations(args.steps).items():
            options = dict(options)
            box = options.pop("box", None)
            times, result = [], None
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = edit(
                    video,
                    source_prompt="a red box",
                    target_prompt="a blue box",
                    model=pipe,
                    box=box,
                    **options,
                )
                times.append(time.perf_counter() - start)
            assert result is not None
            rows.append(
                {
                    "config": name,
                    "method": result.settings.method,
                    "steps": result.settings.steps,
                    "model_calls": result.model_calls,
                    "row_evaluations": result.row_evaluations,
                    "seconds_median": round(statistics.median(times), 4),
                    "source_features": result.info.get("source_features"),
                }
            )
            logger.info(
                "%-40s calls=%3d rows=%3d %.3fs",
                name,
                rows[-1]["model_calls"],
                rows[-1]["row_evaluations"],
                rows[-1]["seconds_median"],
            )
    base = rows[0]
    for row in rows:
        row["row_ratio_vs_baseline"] = round(row["row_evaluations"] / base["row_evaluations"], 3)
        row["time_ratio_vs_baseline"] = round(row["seconds_median"] / base["seconds_median"], 3)
        row["speedup_rows"] = round(base["row_evaluations"] / row["row_evaluations"], 2)

    settings = {
        "model": str(args.model) if args.model else "tiny random-weight Wan2.2-TI2V-form checkpoint (seed 0)",
        "clip": "synthetic 9x64x64",
        "steps": args.steps,
        "repeats": args.repeats,
        "torch_threads": args.threads,
        "device": "cpu",
        "torch": torch.__version__,
        "machine": platform.machine(),
        "flowstudio": __version__,
        "note": "wall times include VAE encode/decode and Python overheads; "
        "row ratios are the portable number",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "edit_speed.json").write_text(
        json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# Editing speed: model calls and wall time against the baseline editor (same run)",
        "",
        f"Settings: `{json.dumps(settings)}`",
        "",
        "| configuration | steps | model calls | row evaluations | rows vs baseline | median s "
        "| time vs baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['config']} | {r['steps']} | {r['model_calls']} | {r['row_evaluations']} | "
        f"{r['row_ratio_vs_baseline']:.2f} | {r['seconds_median']:.3f} | {r['time_ratio_vs_baseline']:.2f} |"
        for r in rows
    ]
    (args.out / "edit_speed.md").write_text("\n".join(lines) + "\n")
    logger.info("wrote %s", args.out / "edit_speed.md")


if __name__ == "__main__":
    main()
