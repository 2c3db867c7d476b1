"""Benchmark of the benchmark: frames per second of each offline metric, on 2 CPU cores.

Each metric runs on a 17-frame ShapeWorld edit pair (source and a colour-edited clip, so every pixel
metric has real differences to process) at 128x128 and 480x832; the best of ``--repeats`` runs is
kept (the machine is shared: the best run is the least disturbed). ``offline tier (all)`` is one
full :func:`flowstudio.bench.scoring.score_case` call: every offline metric of a case with ground
truth and masks, as ``bench run`` computes them. Goal: >= 50 frames/s for the offline tier at 128x128.

Writes ``benchmarks/results/metric_speed.{json,md}``.

    python benchmarks/metric_speed.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys

THREADS = "2"
if __name__ == "__main__":  # thread pools are sized at import: set them before numpy / OpenCV load
    for _i, _arg in enumerate(sys.argv):
        if _arg == "--threads" and _i + 1 < len(sys.argv):
            THREADS = sys.argv[_i + 1]
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = THREADS

import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from flowstudio import __version__  # noqa: E402
from flowstudio.bench.io import save_frames, save_mask  # noqa: E402
from flowstudio.bench.manifest import Case  # noqa: E402
from flowstudio.bench.metrics import color, pixel, temporal  # noqa: E402
from flowstudio.bench.metrics.attributes import attribute_accuracy  # noqa: E402
from flowstudio.bench.scoring import score_case  # noqa: E402
from flowstudio.worlds.edits import edit_spec  # noqa: E402
from flowstudio.worlds.shapes import SceneSpec, render_scene  # noqa: E402

logger = logging.getLogger("metric_speed")
RESULTS = Path(__file__).parent / "results"
SIZES = ((128, 128), (480, 832))
FRAMES = 17
GOAL_FPS = 50.0


def workload(height: int, width: int, folder: Path) -> dict[str, object]:
    """Source, colour-edited target, a slightly perturbed output, masks, and a Case pointing at them."""
    spec = SceneSpec(
        shape="cup", color="red", material="striped", background="wood", motion="turntable_pan_left", seed=7
    )
    target_spec = edit_spec(spec, "color", "blue")
    source = render_scene(spec, FRAMES, height, width)
    target = render_scene(target_spec, FRAMES, height, width)
    rng = np.random.default_rng(0)
    output = np.clip(target.frames.astype(np.int16) + rng.integers(-4, 5, target.frames.shape), 0, 255)
    output = output.astype(np.uint8)
    files = {
        "source": save_frames(folder / "source.npz", source.frames),
        "target": save_frames(folder / "target.npz", target.frames),
        "mask": save_mask(folder / "mask.npz", source.mask),
        "target_mask": save_mask(folder / "target_mask.npz", target.mask),
    }
    case = Case(
        id="speed",
        edit_type="color",
        source=files["source"],
        source_prompt="a red cup",
        target_prompt="a blue cup",
        mask=files["mask"],
        target_mask=files["target_mask"],
        target=files["target"],
        attributes={
            "world": "shapeworld",
            "field": "color",
            "source": spec.to_dict(),
            "target": target_spec.to_dict(),
        },
    )
    return {
        "source": source.frames,
        "target": target.frames,
        "output": output,
        "mask": source.mask,
        "target_mask": target.mask,
        "case": case,
    }


def metric_calls(w: dict[str, object]) -> dict[str, Callable[[], object]]:
    src, tgt, out = w["source"], w["target"], w["output"]
    edit = w["mask"] | w["target_mask"]
    return {
        "psnr (whole + edit region)": lambda: (pixel.psnr(out, tgt), pixel.psnr(out, tgt, edit)),
        "ssim (whole + inside + outside)": lambda: [
            pixel.ssim_from_maps(m, r) for m in [pixel.ssim_maps(out, tgt)] for r in (None, edit, ~edit)
        ],
        "ciede2000 color fidelity": lambda: color.delta_e_clip(out, tgt, edit),
        "background preservation (psnr+ssim+dE00)": lambda: (
            pixel.psnr(out, src, ~edit),
            pixel.ssim(out, src, ~edit),
            color.delta_e_clip(out, src, ~edit),
        ),
        "temporal (warp error + flicker)": lambda: temporal.warp_stats(out),
        "motion fidelity (flow EPE)": lambda: temporal.motion_fidelity(src, out),
        "attribute accuracy (color reader)": lambda: attribute_accuracy(
            out, w["case"].attributes, w["target_mask"]
        ),
        "offline tier (all, score_case)": lambda: score_case(w["case"], out, source=src),
    }


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall-clock seconds and best process CPU seconds (all threads) of ``repeats`` calls."""
    fn()  # warm-up: imports, OpenCV kernels, reader models
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for OpenCV / BLAS (default 2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cv2.setNumThreads(args.threads)
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > args.threads:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for height, width in SIZES:
            folder = Path(tmp) / f"{height}x{width}"
            w = workload(height, width, folder)
            for name, fn in metric_calls(w).items():
                seconds, cpu_seconds = best_time(fn, args.repeats)
                rows.append(
                    {
                        "metric": name,
                        "size": f"{height}x{width}",
                        "frames": FRAMES,
                        "seconds": round(seconds, 4),
                        "frames_per_s": round(FRAMES / seconds, 1),
                        "cpu_seconds": round(cpu_seconds, 4),
                        "frames_per_cpu_s": round(FRAMES / max(cpu_seconds, 1e-9), 1),
                    }
                )
                logger.info(
                    "%-42s %9s %8.1f frames/s wall, %8.1f frames per CPU-second",
                    name,
                    f"{height}x{width}",
                    FRAMES / seconds,
                    FRAMES / max(cpu_seconds, 1e-9),
                )
    tier = next(r for r in rows if r["metric"].startswith("offline tier") and r["size"] == "128x128")
    result = {
        "benchmark": "metric_speed",
        "flowstudio": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "platform": platform.platform(),
        "cpu_threads": args.threads,
        "cpus_visible": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "repeats": args.repeats,
        "frames_per_clip": FRAMES,
        "goal_frames_per_s_128": GOAL_FPS,
        "offline_tier_frames_per_s_128": tier["frames_per_s"],
        "offline_tier_frames_per_cpu_s_128": tier["frames_per_cpu_s"],
        "goal_met": tier["frames_per_s"] >= GOAL_FPS,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "metric_speed.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = [
        "# Offline metric speed",
        "",
        f"{FRAMES}-frame clips, best of {args.repeats}, {args.threads} CPU threads "
        f"(OpenCV, BLAS), load average at the end {tuple(round(v, 1) for v in os.getloadavg())} "
        "(a shared machine). Produced by `python benchmarks/metric_speed.py`.",
        "",
        "Two rates per size: frames per wall-clock second (what a user waits; slowed by other processes on "
        "a shared machine) and frames per CPU-second of this process summed over its threads (not slowed "
        "by other processes; a lower bound of the rate on one dedicated core, so also on 2).",
        "",
        "| metric | 128x128 frames/s (wall) | 128x128 frames/CPU-s | 480x832 frames/s (wall) "
        "| 480x832 frames/CPU-s |",
        "|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["metric"] for r in rows):
        cells = {r["size"]: r for r in rows if r["metric"] == name}
        small, large = cells.get("128x128", {}), cells.get("480x832", {})
        lines.append(
            f"| {name} | {small.get('frames_per_s')} | {small.get('frames_per_cpu_s')} | "
            f"{large.get('frames_per_s')} | {large.get('frames_per_cpu_s')} |"
        )
    verdict = "met" if result["goal_met"] else "NOT met"
    cpu_verdict = "met" if tier["frames_per_cpu_s"] >= GOAL_FPS else "NOT met"
    lines += [
        "",
        f"Goal >= {GOAL_FPS:g} frames/s for the whole offline tier at 128x128: **{verdict}** on wall-clock "
        f"({tier['frames_per_s']} frames/s at this load), **{cpu_verdict}** per CPU-second "
        f"({tier['frames_per_cpu_s']} frames per CPU-second).",
    ]
    (RESULTS / "metric_speed.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("wrote %s and %s", RESULTS / "metric_speed.json", RESULTS / "metric_speed.md")


if __name__ == "__main__":
    main()
