"""What the shape reader sees on generated clips: frames and the reader's estimated object mask
(``flowstudio.worlds.readers.estimate_mask``) of a few held-out text-to-video prompts of ``toy_quality.py``,
with the per-frame shape reads.

    python benchmarks/reader_mask_probe.py --model MODEL --prompts 8 4 7 --out benchmarks/results/NAME.png

Prompt ``i`` is ``toy_quality.py``'s held-out prompt ``i`` with noise seed ``i`` (30 steps, guidance 5
unless ``--steps`` / ``--guidance`` say otherwise), so the clips are exactly those its report scored.
Rows: frames 0, 4, ... 16, then their masks. ``--roundtrip`` shows instead the model's VAE reconstruction
of each prompt's true render (what the VAE does to the same scene from true latents).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np


def main() -> None:
    from PIL import Image

    from flowstudio.pipeline import GenerationSettings, WanVideoPipeline
    from flowstudio.worlds.readers import estimate_mask, read_background, read_shape
    from flowstudio.worlds.shapes import render_clip

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", type=int, nargs="+", default=[8, 4, 7])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--roundtrip", action="store_true", help="VAE reconstructions of the true renders")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    args = parser.parse_args()
    spec_file = Path(__file__).resolve().parent / "toy_quality.py"
    loader = importlib.util.spec_from_file_location("toy_quality", spec_file)
    toy_quality = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(toy_quality)
    pipe = WanVideoPipeline.from_pretrained(args.model, device="cpu")
    rows = []
    for i in args.prompts:
        spec, text = toy_quality.held_out(100_000 + i)
        if args.roundtrip:
            frames = toy_quality.pipeline_roundtrip(pipe)(render_clip(spec))
        else:
            settings = GenerationSettings(prompt=text, steps=args.steps, guidance_scale=args.guidance, seed=i)
            frames = pipe.generate(settings, progress=False).frames
        mask = estimate_mask(frames)
        per_frame = [read_shape(frames[t : t + 1])[0] for t in range(0, len(frames), 4)]
        print(
            f"prompt {i}: asked {spec.shape} / {spec.background}; clip read {read_shape(frames)[0]} / "
            f"{read_background(frames)[0]}; frames 0, 4, ...: {' '.join(per_frame)}"
        )
        picks = range(0, len(frames), 4)
        masks = [np.repeat((mask[t, ..., None] * 255).astype(np.uint8), 3, 2) for t in picks]
        strip = np.concatenate([frames[t] for t in picks], 1)
        rows.append(np.concatenate([strip, np.concatenate(masks, 1)], 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
