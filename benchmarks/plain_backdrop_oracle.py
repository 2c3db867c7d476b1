"""Which of a 4-step student's steps lose the plain backdrop (issue 17).

The 4-step students draw plain backdrops mottled (the background reader calls them marble) where the
30-step teacher draws them flat. This samples the plain-backdrop prompts of ``dmd_toy.py``'s held-out
prompts (same seeds and readers as ``plain_backdrop_steps.py``) four ways from the same starting noise:

* ``student``: the student's own 4 stochastic steps (as ``flowstudio generate`` samples it);
* ``oracle0``: the same, with the student's first prediction replaced by the teacher's sample from
  that noise (30 UniPC steps, CFG 5);
* ``oracle1``: its first two predictions replaced by the teacher's sample;
* ``teacher``: the teacher's sample itself.

If the oracles read plain as often as the teacher, the first steps decide the backdrop and a term on
the first step (DMD's one-step regression) is where to act; if they read it as seldom as the student,
the later steps redraw it. Writes ``benchmarks/results/<tag>.{json,md}``::

    python benchmarks/plain_backdrop_oracle.py --student RUN/student
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from _results import write_results
from plain_backdrop_steps import plain_prompts
from toy_quality import READERS, held_out, read_or_no_object

from flowstudio.core.stochastic import student_grid
from flowstudio.pipeline import WanVideoPipeline

MODES = {"student": 0, "oracle0": 1, "oracle1": 2}  # how many first predictions the teacher's sample replaces


def student_with_oracle(velocity, noise, teacher_sample, grid, replaced: int, seed: int) -> torch.Tensor:
    """The stochastic sampler of ``flowstudio generate`` (fresh noise from the generator seeded
    ``seed``, after the starting noise), with predictions ``0 .. replaced - 1`` set to ``teacher_sample``."""
    generator = torch.Generator().manual_seed(seed)
    torch.randn(noise.shape, generator=generator)  # the starting noise: generate draws it first
    x = noise.clone()
    for k in range(len(grid) - 1):
        sigma, sigma_next = float(grid[k]), float(grid[k + 1])
        x0 = teacher_sample if k < replaced else x - sigma * velocity(x, sigma)
        x = (1 - sigma_next) * x0 + sigma_next * torch.randn(noise.shape, generator=generator)
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", required=True, help="a 4-step student folder (distill run's student/)")
    parser.add_argument("--teacher", default="flowstudio/assets/toy-shapes")
    parser.add_argument(
        "--prompts", type=int, default=200, help="held-out prompts scanned for plain backdrops"
    )
    parser.add_argument("--teacher-steps", type=int, default=30)
    parser.add_argument("--shift", type=float, default=5.0, help="the student's (and teacher's) flow shift")
    parser.add_argument("--tag", default="plain_backdrop_oracle")
    args = parser.parse_args()
    student = WanVideoPipeline.from_pretrained(Path(args.student), device="cpu")
    teacher = WanVideoPipeline.from_pretrained(Path(args.teacher), device="cpu")
    shape = teacher.latent_shape(17, 128, 128)
    grid = student_grid(4, args.shift)
    reads = {mode: Counter() for mode in [*MODES, "teacher"]}
    indices = plain_prompts(args.prompts)
    start = time.perf_counter()
    for i in indices:
        _, text = held_out(100_000 + i)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(i))  # generate's seed i
        cond = teacher.conditioning(text, guidance_scale=5.0, integer_timesteps=True)
        sample = teacher.solve(noise, cond, steps=args.teacher_steps, shift=args.shift, solver="unipc").x
        velocity = student.denoiser.bind(student.conditioning(text, guidance_scale=1.0))
        for mode, replaced in MODES.items():
            x = student_with_oracle(velocity, noise, sample, grid, replaced, seed=i)
            reads[mode][read_or_no_object(READERS["background"], student.decode_latents(x))] += 1
        reads["teacher"][read_or_no_object(READERS["background"], teacher.decode_latents(sample))] += 1
        print(i, {mode: counts["plain"] for mode, counts in reads.items()}, flush=True)
    n = len(indices)
    result = {
        "tag": args.tag,
        "command": "python benchmarks/plain_backdrop_oracle.py "
        + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "student": args.student,
        "teacher": args.teacher,
        "teacher_steps": args.teacher_steps,
        "shift": args.shift,
        "plain_prompts": n,
        "reads": {mode: dict(counts.most_common()) for mode, counts in reads.items()},
        "seconds": time.perf_counter() - start,
    }
    what = {
        "student": "the student's 4 steps",
        "oracle0": "first prediction = the teacher's sample",
        "oracle1": "first two predictions = the teacher's sample",
        "teacher": f"the teacher's sample ({args.teacher_steps} UniPC steps, CFG 5)",
    }
    lines = [
        f"# {args.tag}",
        "",
        f"`{result['command']}`",
        "",
        f"The {n} plain-backdrop prompts among the first {args.prompts} held-out prompts of `dmd_toy.py`, "
        f"same starting noise per prompt; student `{args.student}`.",
        "",
        "| sampled | plain backdrop right | misses read as |",
        "|---|---|---|",
    ]
    for mode, counts in reads.items():
        misses = ", ".join(f"{k} {v}" for k, v in counts.most_common() if k != "plain")
        lines.append(f"| {what[mode]} | {counts['plain']}/{n} | {misses} |")
    write_results(args.tag, result, lines)


if __name__ == "__main__":
    main()
