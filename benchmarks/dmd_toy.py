"""DMD students against their teacher on the ShapeWorld toy (issue 17, item 4), in one run.

For the teacher at its default sampling (30 UniPC steps, CFG 5), the teacher cut to each student's
step count (same sampler and guidance: what distillation must beat), and each student (its own steps,
guidance 1, the ``dmd`` sampler, from its ``distill.json``):

- **text-to-video** on held-out prompts (``toy_quality.py``'s stream and readers): colour / shape /
  background accuracy with Wilson 95% intervals, and an exact McNemar test against the teacher on the
  same prompts;
- **image-to-video** PSNR of frames 1..16 against the true render;
- **toy FD**: a Fréchet distance between generated clips and the true renders of the same prompts, on
  pixel features (frames 0, 4, 8, 12, 16 at 16 x 16, projected on the 32 principal axes of the true
  renders). It is *not* I3D FVD: it compares what the toy's clips look like at low resolution (colour
  layout, motion) and is comparable only between models scored in the same run;
- **speed**: transformer calls per clip (counted) and wall time per clip, as ratios to the teacher.

Bars (issue 17): the 4-step student within 5 points of the teacher's T2V accuracy (each attribute)
with >= 10x fewer transformer calls. Writes ``benchmarks/results/<tag>.{json,md,png}``.

The teacher's rows are most of a report's time (30 steps x 2 branches per clip) and are
deterministic. ``--reuse-teacher EARLIER.json`` takes them (T2V reads, I2V PSNR, toy FD) from an
earlier report of the same settings after regenerating its first ``--check-prompts`` prompts here
(a teacher row the earlier report lacks, such as a cut to a step count none of its students had, is
measured in this run):
every read must come out the same (else the model or the code changed, and the run stops), and
those clips give this run's timing of the teacher (the time ratios stay same-run). The report names
the file the rows came from.

    python benchmarks/dmd_toy.py --teacher flowstudio/assets/toy-shapes \\
        --student 4-step=outputs/distill_toy_4step/student --student 8-step=outputs/distill_toy_8step/student
"""

from __future__ import annotations

import argparse
import json
import platform
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
from _results import write_results
from toy_quality import RESULTS, held_out, i2v_quality, t2v_quality
from toy_quality_compare import compare

from flowstudio import __version__
from flowstudio.distill.export import student_settings
from flowstudio.worlds.shapes import render_clip

ATTRIBUTES = ("color", "shape", "background")
FD_FRAMES = (0, 4, 8, 12, 16)
FD_SIZE, FD_DIMS = 16, 32
BAR_POINTS, BAR_CALLS = 0.05, 10.0


def within_bar(student: float, teacher: float) -> bool:
    """At most ``BAR_POINTS`` under the teacher, exactly at the edge included: accuracies are fractions
    of prompts, so 0.48 against 0.53 is 5 points, though ``0.53 - 0.05`` is 0.48000000000000004."""
    return round(teacher - student, 9) <= BAR_POINTS


def pixel_features(clip: np.ndarray) -> np.ndarray:
    """Frames ``FD_FRAMES`` of a uint8 ``(T, H, W, 3)`` clip, area-averaged to 16 x 16, flattened (0..1)."""
    t, h, w, _ = clip.shape
    frames = clip[[min(f, t - 1) for f in FD_FRAMES]].astype(np.float64) / 255.0
    small = frames.reshape(len(FD_FRAMES), FD_SIZE, h // FD_SIZE, FD_SIZE, w // FD_SIZE, 3).mean(axis=(2, 4))
    return small.reshape(-1)


def toy_fd(generated: list[np.ndarray], real: list[np.ndarray]) -> float:
    """Fréchet distance of pixel features, projected on the true renders' first ``FD_DIMS`` principal axes."""
    from flowstudio.bench.metrics.reference import feature_stats, frechet_distance

    a = np.stack([pixel_features(c) for c in generated])
    b = np.stack([pixel_features(c) for c in real])
    centre = b.mean(axis=0)
    _, _, axes = np.linalg.svd(b - centre, full_matrices=False)
    basis = axes[: min(FD_DIMS, len(b) - 1)].T
    return max(
        0.0,
        float(frechet_distance(*feature_stats((a - centre) @ basis), *feature_stats((b - centre) @ basis))),
    )


def counted_t2v(pipe, *args) -> tuple[tuple, int]:
    """``t2v_quality(pipe, *args)`` and the transformer's forward passes over it (two per step with
    CFG: one per branch)."""
    calls = [0]
    hook = pipe.components.transformer.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        return t2v_quality(pipe, *args), calls[0]
    finally:
        hook.remove()


def measure(name: str, folder: Path, steps: int, guidance: float, solver: str, shift: float, args) -> dict:
    """Every measure of one model setting (clips generated once and read by every measure)."""
    from flowstudio.pipeline import WanVideoPipeline

    pipe = WanVideoPipeline.from_pretrained(folder, device="cpu")
    print(f"{name}: {steps} steps, guidance {guidance}, {solver}")
    generated: list[np.ndarray] = []  # the first fd_clips T2V clips, for the toy FD

    def keep(i: int, frames: np.ndarray) -> None:
        if i < args.fd_clips:
            generated.append(frames)

    start = time.perf_counter()
    (accuracy, seconds, items, samples), calls = counted_t2v(
        pipe, args.prompts, steps, guidance, solver, shift, keep
    )
    t2v_time = time.perf_counter() - start
    return {
        "name": name,
        "model": str(folder),
        "steps": steps,
        "guidance_scale": guidance,
        "solver": solver,
        "shift": shift,
        "t2v": accuracy,
        "items": items,
        "seconds_per_clip": float(np.median(seconds)),
        "t2v_seconds": t2v_time,
        "model_calls_per_clip": calls // args.prompts,
        "i2v_psnr_db": i2v_quality(pipe, args.i2v_clips, steps, guidance, solver, shift),
        "_samples": samples[:4],
        "_generated": generated,
    }


def reuse(name: str, steps: int, guidance: float, shift: float, args, earlier: dict) -> dict | None:
    """The earlier report's row of this teacher setting, checked and timed on ``args.check_prompts``;
    ``None`` when the earlier report has no such row (e.g. a cut to a step count no student there had)."""
    from flowstudio.pipeline import WanVideoPipeline

    wanted = {"prompts": args.prompts, "i2v_clips": args.i2v_clips, "fd_clips": args.fd_clips}
    have = {k: earlier["settings"].get(k) for k in wanted}
    if have != wanted:
        raise SystemExit(f"--reuse-teacher: its settings {have} are not this run's {wanted}")
    matches = [
        r
        for r in earlier["rows"]
        if (r["steps"], r["guidance_scale"], r["solver"], r["shift"]) == (steps, guidance, "unipc", shift)
        and Path(r["model"]).resolve() == args.teacher.resolve()
    ]
    if not matches:
        return None
    row = json.loads(json.dumps(matches[0]))
    pipe = WanVideoPipeline.from_pretrained(args.teacher, device="cpu")
    print(f"{name}: checking {args.check_prompts} prompts against {args.reuse_teacher}")
    (_, seconds, items, samples), calls = counted_t2v(
        pipe, args.check_prompts, steps, guidance, "unipc", shift
    )
    for i, (now, then) in enumerate(zip(items, row["items"], strict=False)):
        if now != then:
            raise SystemExit(
                f"--reuse-teacher: prompt {i} reads {now} here but {then} in {args.reuse_teacher}: the "
                "model or the code changed since; run without --reuse-teacher"
            )
    return row | {
        "name": name,
        "seconds_per_clip": float(np.median(seconds)),
        "model_calls_per_clip": calls // args.check_prompts,
        "reused_from": str(args.reuse_teacher),
        "checked_prompts": args.check_prompts,
        "_samples": samples[:4],
        "_generated": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", type=Path, default=Path("flowstudio/assets/toy-shapes"))
    parser.add_argument("--student", action="append", default=[], help="NAME=FOLDER of an exported student")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--i2v-clips", type=int, default=20)
    parser.add_argument("--fd-clips", type=int, default=100, help="T2V clips (of --prompts) the toy FD reads")
    parser.add_argument("--teacher-steps", type=int, default=30)
    parser.add_argument("--teacher-guidance", type=float, default=5.0)
    parser.add_argument("--reuse-teacher", type=Path, help="an earlier report's JSON (see above)")
    parser.add_argument("--check-prompts", type=int, default=8, help="prompts regenerated to check it")
    parser.add_argument("--tag", default="dmd_toy")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.fd_clips = min(args.fd_clips, args.prompts)
    if args.fd_clips < 3:
        parser.error("the toy FD needs at least 3 clips: raise --prompts / --fd-clips")
    students = []
    for entry in args.student:
        name, _, folder = entry.partition("=")
        settings = student_settings(Path(folder))
        if not folder or settings is None:
            parser.error(
                f"--student {entry!r}: give NAME=FOLDER of a folder exported by `flowstudio distill`"
            )
        students.append((name, Path(folder), settings))
    shift = 5.0
    earlier = json.loads(args.reuse_teacher.read_text()) if args.reuse_teacher else None

    def teacher_row(name: str, steps: int) -> dict:
        if earlier is not None:
            row = reuse(name, steps, args.teacher_guidance, shift, args, earlier)
            if row is not None:
                return row
            print(f"{name}: not in {args.reuse_teacher}; measured in this run")
        return measure(name, args.teacher, steps, args.teacher_guidance, "unipc", shift, args)

    rows = [teacher_row("teacher", args.teacher_steps)]
    for steps in sorted({int(s["steps"]) for _, _, s in students}):
        rows.append(teacher_row(f"teacher, {steps} steps", steps))
    for name, folder, s in students:
        rows.append(
            measure(
                name,
                folder,
                int(s["steps"]),
                float(s["guidance_scale"]),
                s["sampler"],
                float(s["shift"]),
                args,
            )
        )
    real = [render_clip(held_out(100_000 + i)[0]) for i in range(args.fd_clips)]
    teacher = rows[0]
    for row in rows:
        generated = row.pop("_generated")
        if generated is not None:  # a reused row keeps its toy FD (the same true renders)
            row["toy_fd"] = toy_fd(generated, real)
        row["vs_teacher"] = compare(row["items"], teacher["items"]) if row is not teacher else None
        row["calls_ratio"] = teacher["model_calls_per_clip"] / row["model_calls_per_clip"]
        row["time_ratio"] = teacher["seconds_per_clip"] / row["seconds_per_clip"]
        row["bar"] = {
            a: within_bar(row["t2v"][a]["value"], teacher["t2v"][a]["value"]) for a in ATTRIBUTES
        } | {"calls": row["calls_ratio"] >= BAR_CALLS}
    result = {
        "settings": {
            "teacher": str(args.teacher),
            "prompts": args.prompts,
            "i2v_clips": args.i2v_clips,
            "fd_clips": args.fd_clips,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "torch": torch.__version__,
            "flowstudio": __version__,
            "reuse_teacher": None if earlier is None else str(args.reuse_teacher),
            "check_prompts": None if earlier is None else args.check_prompts,
        },
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out / f"{args.tag}.png")
    for row in rows:
        row.pop("_samples")
    print(write_results(args.tag, result, report(result, args.tag).splitlines(), args.out).read_text())


def report(result: dict, tag: str) -> str:
    rows = result["rows"]
    lines = [
        f"# {tag}: DMD students against their teacher on the toy",
        "",
        f"Settings: `{json.dumps(result['settings'])}`",
        "",
        f"Held-out prompts of `toy_quality.py`; accuracy with Wilson 95% intervals; p: exact McNemar against "
        f"the teacher on the same prompts. Bars (issue 17): within {100 * BAR_POINTS:g} points of the "
        f"teacher on each attribute and >= {BAR_CALLS:.0f}x fewer transformer calls. toy FD: pixel-feature "
        "Fréchet distance to the true renders (lower is better; comparable within this table only).",
        "",
        "| model | steps | CFG | sampler | colour | shape | background | I2V PSNR | toy FD | calls/clip | "
        "calls ratio | time ratio | bars met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = []
        for a in ATTRIBUTES:
            e = row["t2v"][a]
            p = "" if row["vs_teacher"] is None else f" (p {row['vs_teacher'][a]['p']:.2f})"
            cells.append(f"{e['value']:.1%} [{e['ci95'][0]:.0%}, {e['ci95'][1]:.0%}]{p}")
        met = (
            "-"
            if row is rows[0]
            else (
                "yes"
                if all(row["bar"].values())
                else "no: " + ", ".join(k for k, v in row["bar"].items() if not v)
            )
        )
        lines.append(
            f"| {row['name']} | {row['steps']} | {row['guidance_scale']:g} | {row['solver']} | "
            + " | ".join(cells)
            + f" | {row['i2v_psnr_db']:.2f} dB | {row['toy_fd']:.3f} | {row['model_calls_per_clip']} | "
            f"{row['calls_ratio']:.1f}x | {row['time_ratio']:.1f}x | {met} |"
        )
    reused = [row["name"] for row in rows if row.get("reused_from")]
    if reused:
        lines += [
            "",
            f"Rows {', '.join(reused)}: T2V reads, I2V PSNR and toy FD from "
            f"`{rows[0]['reused_from']}` (the same teacher, prompts and seeds), after regenerating its "
            f"first {rows[0]['checked_prompts']} prompts here with identical reads; their timing is "
            "this run's.",
        ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Middle frames of the first 4 held-out prompts, one row per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(len(r["_samples"]) for r in rows)
    fig, axes = plt.subplots(len(rows), count, figsize=(2 * count, 2.1 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(count):
            ax = axes[i][j]
            ax.imshow(row["_samples"][j])
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(textwrap.fill(row["name"], 22), fontsize=8)  # long names wrap, not clip
            if i == 0:
                ax.set_title(rows[0]["items"][j]["prompt"][:40], fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
