"""Plain backdrops under few-step sampling: which sampling settings draw them (issue 17).

The 4-step students miss the distillation bar on background only, and only on the plain backdrop:
they draw it mottled and the background reader calls it marble (docs/findings_distill.md). This reads the
plain-backdrop prompts among ``dmd_toy.py``'s held-out prompts (``toy_quality.held_out(100000 + i)``,
same seeds, same readers) under each given sampling setting, so that a lever on the *levels* (flow
shift, step count) can be judged before a student is trained for it:

    python benchmarks/plain_backdrop_steps.py \\
        --setting "teacher 4 UniPC, shift 5=flowstudio/assets/toy-shapes:unipc:4:5:5" \\
        --setting "student=RUN/student:dmd:4:2:1" ...

A setting is ``NAME=FOLDER:SOLVER:STEPS:SHIFT:GUIDANCE``. For the ``dmd`` sampler the shift warps the
student's own levels (``flowstudio.core.stochastic.student_sigmas``), so another shift than the one it
was trained at asks it for levels it never saw. Writes ``benchmarks/results/<tag>.{json,md}``: per
setting, plain backdrops read right, what the misses were read as, and colour / shape on the same clips.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from _results import RESULTS, write_results
from toy_quality import READERS, held_out, read_or_no_object

from flowstudio.pipeline import GenerationSettings, WanVideoPipeline


def parse_setting(text: str) -> dict:
    """``NAME=FOLDER:SOLVER:STEPS:SHIFT:GUIDANCE`` -> its fields (the folder may not contain ``:``)."""
    name, _, rest = text.partition("=")
    parts = rest.split(":")
    if not name or len(parts) != 5:
        raise SystemExit(f"--setting {text!r}: expected NAME=FOLDER:SOLVER:STEPS:SHIFT:GUIDANCE")
    folder, solver, steps, shift, guidance = parts
    return {
        "name": name,
        "model": folder,
        "solver": solver,
        "steps": int(steps),
        "shift": float(shift),
        "guidance_scale": float(guidance),
    }


def plain_prompts(prompts: int) -> list[int]:
    """Indices ``i < prompts`` of the held-out stream whose backdrop is plain."""
    return [i for i in range(prompts) if held_out(100_000 + i)[0].background == "plain"]


def measure(
    setting: dict, indices: list[int], pipes: dict, keep: dict | None = None, picture: int = 0
) -> dict:
    """Read the plain-backdrop prompts under ``setting``; the middle frames of the first ``picture`` go to
    ``keep[setting name]`` (for :func:`draw`)."""
    folder = setting["model"]
    if folder not in pipes:
        pipes[folder] = WanVideoPipeline.from_pretrained(Path(folder), device="cpu")
    pipe = pipes[folder]
    hits = dict.fromkeys(READERS, 0)
    backgrounds = []
    start = time.perf_counter()
    for i in indices:
        spec, text = held_out(100_000 + i)
        frames = pipe.generate(
            GenerationSettings(
                prompt=text,
                steps=setting["steps"],
                guidance_scale=setting["guidance_scale"],
                seed=i,
                solver=setting["solver"],
                shift=setting["shift"],
            ),
            progress=False,
        ).frames
        if keep is not None and len(keep.setdefault(setting["name"], [])) < picture:
            keep[setting["name"]].append(frames[len(frames) // 2])
        for name, reader in READERS.items():
            read = read_or_no_object(reader, frames)
            hits[name] += read == getattr(spec, name)
            if name == "background":
                backgrounds.append(read)
    row = {
        **setting,
        "plain": hits["background"],
        "color": hits["color"],
        "shape": hits["shape"],
        "prompts": len(indices),
        "background_reads": dict(Counter(backgrounds).most_common()),
        "background_per_prompt": backgrounds,
        "seconds": time.perf_counter() - start,
    }
    print(f"{setting['name']}: plain {row['plain']}/{len(indices)}, {row['background_reads']}", flush=True)
    return row


def draw(frames: dict[str, list], reads: dict[str, list[str]], path: Path) -> None:
    """One row per setting, one column per prompt: its middle frame, titled with the read backdrop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(frames)
    cols = max(len(v) for v in frames.values())
    fig, axes = plt.subplots(len(names), cols, figsize=(1.9 * cols, 2.1 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        for c in range(cols):
            axis = axes[r][c]
            axis.set_xticks([]), axis.set_yticks([])
            if c < len(frames[name]):
                axis.imshow(frames[name][c])
                axis.set_title(f"read: {reads[name][c]}", fontsize=8)
        axes[r][0].set_ylabel(name, fontsize=8)
    fig.suptitle("plain-backdrop prompts, middle frame", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(result: dict) -> list[str]:
    n = result["plain_prompts"]
    lines = [
        f"# {result['tag']}",
        "",
        f"`{result['command']}`",
        "",
        f"The {n} plain-backdrop prompts among the first {result['prompts']} held-out prompts of "
        "`dmd_toy.py` (same seeds and readers), read under each sampling setting.",
        "",
        "| setting | model | sampler | steps | shift | guidance | plain backdrop right | misses read as "
        "| colour | shape |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        misses = ", ".join(f"{k} {v}" for k, v in row["background_reads"].items() if k != "plain")
        lines.append(
            f"| {row['name']} | `{row['model']}` | {row['solver']} | {row['steps']} | {row['shift']:g} | "
            f"{row['guidance_scale']:g} | {row['plain']}/{n} | {misses} | {row['color']}/{n} "
            f"| {row['shape']}/{n} |"
        )
    return lines


def main() -> None:
    import shlex
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--setting", action="append", required=True, help="NAME=FOLDER:SOLVER:STEPS:SHIFT:GUIDANCE"
    )
    parser.add_argument(
        "--prompts", type=int, default=200, help="held-out prompts scanned for plain backdrops"
    )
    parser.add_argument("--tag", default="plain_backdrop_steps")
    parser.add_argument(
        "--picture", type=int, default=0, help="also draw the first N prompts per setting (<tag>.png)"
    )
    args = parser.parse_args()
    settings = [parse_setting(text) for text in args.setting]
    indices = plain_prompts(args.prompts)
    pipes: dict = {}
    kept: dict[str, list] = {}
    result = {
        "tag": args.tag,
        "command": "python benchmarks/plain_backdrop_steps.py "
        + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "prompts": args.prompts,
        "plain_prompts": len(indices),
        "rows": [],
    }
    for setting in settings:
        result["rows"].append(measure(setting, indices, pipes, kept, args.picture))
        write_results(args.tag, result, report(result))  # after every setting: a stopped run keeps its rows
        if args.picture:
            reads = {row["name"]: row["background_per_prompt"] for row in result["rows"]}
            draw(kept, reads, RESULTS / f"{args.tag}.png")


if __name__ == "__main__":
    main()
