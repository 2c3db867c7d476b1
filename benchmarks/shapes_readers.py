"""ShapeWorld analytic readers: accuracy on held-out renders, and dataset-writer throughput.

For each of ``--clips`` random held-out scenes (dataset seed ``--seed``, never used for fitting) the
clip is rendered at 17x128x128 and read by the colour, shape, background and style readers:

- ``clean / true mask``: the render and its exact mask (the primary number, bar: >= 98%);
- ``clean / estimated mask``: the render, mask estimated by ``estimate_mask``;
- ``degraded``: Gaussian blur sigma 1.0, Gaussian noise std 5, then an H.264 round trip through
  ``write_video``/``read_video`` (crf 18), read with the true and with an estimated mask.

Then ``make_shapes_dataset`` writes ``--throughput-clips`` clips with edits ``--repeats`` times with
2 workers, and once with 1 worker; clips per minute are reported with the machine's load average
before and after each run (the machine may be shared with other work).

Writes ``benchmarks/results/shapes_readers.{json,md}``.

    python benchmarks/shapes_readers.py [--clips 300] [--seed 2024] [--throughput-clips 600]
    python benchmarks/shapes_readers.py --fit [--fit-clips 800]   # refit the reader constants
    python benchmarks/shapes_readers.py --fit --only MATERIAL      # refit one, keep the others

``--fit`` renders ``--fit-clips`` scenes from dataset seed 1000 (clean and degraded, both with true
and with estimated masks; one Gaussian per class and condition) and rewrites
``flowstudio/worlds/_reader_models.py``; with ``--only`` the other readers' constants are kept as
they are. The material reader (added later than the others) is scored with the same conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from flowstudio import __version__
from flowstudio.video import read_video, write_video
from flowstudio.worlds import (
    BACKGROUNDS,
    COLORS,
    MATERIALS,
    SHAPES,
    STYLES,
    clip_spec,
    make_shapes_dataset,
    readers,
    render_scene,
)

RESULTS = Path(__file__).parent / "results"
MODELS_FILE = Path(readers.__file__).with_name("_reader_models.py")
FIT_SEED = 1000
READERS = {
    "color": (readers.read_color, tuple(COLORS)),
    "shape": (readers.read_shape, SHAPES),
    "background": (readers.read_background, BACKGROUNDS),
    "style": (readers.read_style, STYLES),
    "material": (readers.read_material, MATERIALS),
}
MODELS = ("SHAPE", "BACKGROUND", "STYLE", "MATERIAL")
SHAPE = (17, 128, 128)


def degrade(frames: np.ndarray, seed: int, tmp: Path) -> np.ndarray:
    """Gaussian blur sigma 1, noise std 5, H.264 round trip (crf 18) through write_video/read_video."""
    rng = np.random.default_rng(seed)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in frames]).astype(np.float32)
    noisy = np.clip(blurred + rng.normal(0.0, 5.0, frames.shape), 0, 255).round().astype(np.uint8)
    path = write_video(tmp / "degraded.mp4", noisy, 16.0)
    return read_video(path).frames


def scenes(seed: int, count: int, tmp: Path) -> list[dict]:
    """Render ``count`` scenes of dataset ``seed`` with their degraded version."""
    out = []
    for index in range(count):
        spec = clip_spec(seed, index)
        render = render_scene(spec, *SHAPE)
        out.append(
            {
                "spec": spec,
                "frames": render.frames,
                "mask": render.mask,
                "degraded": degrade(render.frames, seed * 100003 + index, tmp),
            }
        )
    return out


def fit(count: int, tmp: Path, only: tuple[str, ...] | None = None) -> None:
    start = time.perf_counter()
    samples = []
    for scene in scenes(FIT_SEED, count, tmp):
        labels = {
            "shape": scene["spec"].shape,
            "background": scene["spec"].background,
            "style": scene["spec"].style,
            "material": scene["spec"].material,
        }
        for mode in ("clean", "degraded"):
            frames = scene["frames"] if mode == "clean" else scene["degraded"]
            samples.append((frames, scene["mask"], {**labels, "mode": mode}))
            samples.append((frames, readers.estimate_mask(frames), {**labels, "mode": mode}))
    models = readers.fit_reader_models(samples, only=only)
    write_models(models, count)
    print(f"fitted on {len(samples)} samples in {time.perf_counter() - start:.0f} s -> {MODELS_FILE}")


def write_models(models: dict, count: int) -> None:
    """Write the fitted constants as a Python module (ruff clean, not reformatted); models not in
    ``models`` keep their constants and the line that says how they were made."""
    from flowstudio.worlds import _reader_models as current

    sources = dict(getattr(current, "SOURCES", {}))
    tables = {name: getattr(current, name) for name in MODELS if hasattr(current, name)}
    for name in models:
        sources[name] = (
            f"python benchmarks/shapes_readers.py --fit --only {name} --fit-clips {count}"
            if set(models) != set(MODELS)
            else f"python benchmarks/shapes_readers.py --fit --fit-clips {count}"
        )
    for name in tables:
        sources.setdefault(name, "python benchmarks/shapes_readers.py --fit --fit-clips 800")
    tables.update(models)
    text = [
        '"""Reader constants: per-class feature means and standard deviations (rows may repeat a class).',
        "",
        f"Fitted on renders of dataset seed {FIT_SEED} (clean and degraded, with true and estimated masks),",
        "each model by the command in SOURCES. Do not edit.",
        '"""',
        "",
        "# fmt: off",
        "SOURCES = {",
        *(f'    "{name}": "{sources[name]}",' for name in tables),
        "}\n",
    ]
    for name, table in tables.items():
        text.append(f"{name} = {{")
        classes = ", ".join(f'"{c}"' for c in table["classes"])
        text += textwrap.wrap(
            f'"classes": [{classes}],', width=106, initial_indent="    ", subsequent_indent="        "
        )
        for key in ("mean", "std"):
            text.append(f'    "{key}": [')
            for row in table[key]:
                body = ", ".join(repr(float(v)) for v in row)
                text += textwrap.wrap(
                    f"[{body}],", width=106, initial_indent="        ", subsequent_indent="         "
                )
            text.append("    ],")
        text.append("}\n")
    MODELS_FILE.write_text("\n".join(text))


def evaluate(seed: int, count: int, tmp: Path, names: tuple[str, ...] | None = None) -> dict:
    readers_used = {name: READERS[name] for name in names or READERS}
    conditions = {
        "clean / true mask": [],
        "clean / estimated mask": [],
        "degraded / true mask": [],
        "degraded / estimated mask": [],
    }
    rows = {name: {c: [] for c in conditions} for name in readers_used}
    timing = Counter()
    for scene in scenes(seed, count, tmp):
        spec = scene["spec"]
        truth = {
            "color": spec.color,
            "shape": spec.shape,
            "background": spec.background,
            "style": spec.style,
            "material": spec.material,
        }
        for condition in conditions:
            frames = scene["frames"] if condition.startswith("clean") else scene["degraded"]
            start = time.perf_counter()
            mask = scene["mask"] if condition.endswith("true mask") else readers.estimate_mask(frames)
            timing["estimate_mask"] += (
                time.perf_counter() - start if condition.endswith("estimated mask") else 0
            )
            for name, (reader, _) in readers_used.items():
                start = time.perf_counter()
                label, _ = reader(frames, mask)
                timing[name] += time.perf_counter() - start
                rows[name][condition].append((truth[name], label))
    report = {}
    for name, (_, classes) in readers_used.items():
        report[name] = {}
        for condition, pairs in rows[name].items():
            confusion = np.zeros((len(classes), len(classes)), int)
            for true, pred in pairs:
                confusion[classes.index(true), classes.index(pred)] += 1
            report[name][condition] = {
                "accuracy": float(np.trace(confusion) / confusion.sum()),
                "n": int(confusion.sum()),
                "classes": list(classes),
                "confusion": confusion.tolist(),
            }
    calls = count * len(conditions)
    ms = {
        name: round(1000 * seconds / (calls if name != "estimate_mask" else count * 2), 2)
        for name, seconds in timing.items()
    }
    return {"readers": report, "ms_per_clip": ms}


def throughput(count: int, workers: int, repeats: int, tmp: Path) -> dict:
    """Clips per minute of ``make_shapes_dataset`` with edits, ``repeats`` runs (the machine may be shared:
    each run records the load average), plus one single-worker run as a baseline."""
    runs = []
    for repeat in range(repeats + 1):
        n = workers if repeat < repeats else 1
        folder = tmp / f"ds{repeat}"
        load_before = os.getloadavg()
        start = time.perf_counter()
        make_shapes_dataset(folder, count, seed=7, workers=n, resume=False, progress=False)
        seconds = time.perf_counter() - start
        runs.append(
            {
                "workers": n,
                "seconds": round(seconds, 2),
                "clips_per_minute": round(count / seconds * 60, 1),
                "load_average_before": [round(v, 2) for v in load_before],
                "load_average_after": [round(v, 2) for v in os.getloadavg()],
            }
        )
    size = sum(p.stat().st_size for p in (tmp / "ds0").iterdir())
    start = time.perf_counter()
    make_shapes_dataset(tmp / "ds0", count, seed=7, workers=workers, resume=True, progress=False)
    resume_seconds = time.perf_counter() - start
    rates = [r["clips_per_minute"] for r in runs if r["workers"] == workers]
    return {
        "clips": count,
        "workers": workers,
        "with_edits": True,
        "preset": "veryfast",
        "crf": 18,
        "best_clips_per_minute": max(rates),
        "median_clips_per_minute": float(np.median(rates)),
        "single_worker_clips_per_minute": runs[-1]["clips_per_minute"],
        "runs": runs,
        "resume_check_seconds": round(resume_seconds, 2),
        "bytes_per_clip": int(size / count),
    }


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        "# ShapeWorld readers and dataset writer",
        "",
        f"flowstudio {s['flowstudio']}, {s['clips']} held-out clips (dataset seed {s['seed']}, fit seed "
        f"{s['fit_seed']}), {s['frames']}x{s['height']}x{s['width']}; degraded = blur sigma 1.0 + noise "
        "std 5 + H.264 crf 18 round trip. Machine: " + s["machine"],
        "",
        "| reader | clean, true mask | clean, estimated mask | degraded, true mask "
        "| degraded, estimated mask |",
        "|---|---|---|---|---|",
    ]
    for name, conditions in result["readers"].items():
        cells = [f"{100 * c['accuracy']:.1f}%" for c in conditions.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Reader time per clip (ms): " + ", ".join(f"{k} {v}" for k, v in result["ms_per_clip"].items()),
        "",
    ]
    for name, conditions in result["readers"].items():
        for condition, c in conditions.items():
            if condition != "clean / true mask" and c["accuracy"] >= 0.99:
                continue  # the clean confusion always, the others where they show errors
            lines += [
                f"## {name}: confusion, {condition} (rows: truth, columns: read)",
                "",
                "| | " + " | ".join(c["classes"]) + " |",
                "|---" * (len(c["classes"]) + 1) + "|",
            ]
            for cls, row in zip(c["classes"], c["confusion"], strict=True):
                lines.append(f"| {cls} | " + " | ".join(str(v) for v in row) + " |")
            lines.append("")
    t = result.get("throughput")
    if t:
        lines += [
            "## Dataset writer",
            "",
            f"`make_shapes_dataset`, {t['clips']} clips with edits (2 mp4 at crf {t['crf']} preset "
            f"{t['preset']} + bit-packed masks + JSON per clip), {t['workers']} workers: "
            f"**best {t['best_clips_per_minute']} clips/min**, median {t['median_clips_per_minute']} over "
            f"{len(t['runs']) - 1} runs; 1 worker: {t['single_worker_clips_per_minute']} clips/min. "
            f"{t['bytes_per_clip'] / 1024:.0f} KiB per clip; resume check of the complete dataset "
            f"{t['resume_check_seconds']} s. The machine is shared: the load average (1, 5, 15 min) "
            "before each run is given.",
            "",
            "| workers | seconds | clips/min | load before | load after |",
            "|---|---|---|---|---|",
        ]
        for r in t["runs"]:
            lines.append(
                f"| {r['workers']} | {r['seconds']} | {r['clips_per_minute']} | "
                f"{r['load_average_before']} | {r['load_average_after']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--throughput-clips", type=int, default=600, help="0 skips the throughput run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs with --workers")
    parser.add_argument("--fit", action="store_true", help="refit the reader constants instead")
    parser.add_argument("--fit-clips", type=int, default=800)
    parser.add_argument("--only", choices=MODELS, action="append", help="--fit: refit only these")
    parser.add_argument(
        "--readers", choices=tuple(READERS), action="append", help="score only these (all by default)"
    )
    parser.add_argument("--tag", default="shapes_readers", help="results file name")
    args = parser.parse_args()
    if args.seed == FIT_SEED:
        parser.error(f"--seed {FIT_SEED} is the fitting seed; evaluate on another one")
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.fit:
            fit(args.fit_clips, tmp, tuple(args.only) if args.only else None)
            return
        start = time.perf_counter()
        result = evaluate(args.seed, args.clips, tmp, tuple(args.readers) if args.readers else None)
        result["settings"] = {
            "flowstudio": __version__,
            "clips": args.clips,
            "seed": args.seed,
            "fit_seed": FIT_SEED,
            "frames": SHAPE[0],
            "height": SHAPE[1],
            "width": SHAPE[2],
            "degradation": "gaussian blur sigma 1.0, noise std 5, H.264 crf 18 round trip",
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"python {platform.python_version()}, numpy {np.__version__}, "
            f"opencv {cv2.__version__}",
        }
        result["evaluation_seconds"] = round(time.perf_counter() - start, 1)
        if args.throughput_clips:
            result["throughput"] = throughput(args.throughput_clips, args.workers, args.repeats, tmp)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{args.tag}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
