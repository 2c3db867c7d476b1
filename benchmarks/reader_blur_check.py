"""Are the ShapeWorld readers thrown by soft edges? Shape and background read on true renders, on the same
renders Gaussian-blurred (sigma 1.5 and 3 px, softer than the toy VAE's reconstructions), and shape on the
exact render masks.

    python benchmarks/reader_blur_check.py [--clips 70] [--seed 12345]

Writes ``benchmarks/results/reader_blur_check.md``. Why: generated clips read "ball" for most shapes and
never "plain" backgrounds (``toy_quality_patch*_step6000.md``); if blur alone broke the readers, that would
be the readers' gap, not the model's.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    import cv2

    from flowstudio.worlds.readers import read_background, read_shape
    from flowstudio.worlds.shapes import random_spec, render_clip, render_mask

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=70)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    specs = [random_spec(rng) for _ in range(args.clips)]
    right: dict[tuple[str, str], int] = collections.Counter()
    plain_reads: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    variants = ("render", "blur 1.5 px", "blur 3 px")
    for spec in specs:
        clip = render_clip(spec)
        for name in variants:
            sigma = {"render": 0.0, "blur 1.5 px": 1.5, "blur 3 px": 3.0}[name]
            frames = clip if sigma == 0 else np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in clip])
            right[(name, "shape")] += read_shape(frames)[0] == spec.shape
            background = read_background(frames)[0]
            right[(name, "background")] += background == spec.background
            if spec.background == "plain":
                plain_reads[name][background] += 1
        right[("exact mask", "shape")] += read_shape(mask=render_mask(spec))[0] == spec.shape
    plain = sum(1 for s in specs if s.background == "plain")
    lines = [
        "# reader_blur_check",
        "",
        f"`python benchmarks/reader_blur_check.py --clips {args.clips} --seed {args.seed}`: readers on "
        f"{args.clips} random ShapeWorld clips (17 x 128 x 128), {plain} with a plain background.",
        "",
        "| clips read | shape | background | plain read as |",
        "|---|---|---|---|",
    ]
    for name in variants:
        reads = ", ".join(f"{k} {v}" for k, v in plain_reads[name].most_common())
        lines.append(
            f"| {name} | {right[(name, 'shape')]}/{args.clips} | {right[(name, 'background')]}/{args.clips} "
            f"| {reads} |"
        )
    lines.append(f"| exact render masks | {right[('exact mask', 'shape')]}/{args.clips} | - | - |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "reader_blur_check.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
