"""Quality bars of the ShapeWorld toy model (issue 4), measured against ground truth.

- VAE reconstruction PSNR on held-out clips;
- text-to-video on held-out prompts: colour / shape / background read correctly by the analytic
  readers (``flowstudio.worlds.readers``);
- image-to-video: mean PSNR of frames 1..T-1 against the true render, given the true first frame;
- generation time per clip on this machine.

Held-out clips come from a seed stream the training never draws from. Writes
``benchmarks/results/toy_quality.{json,md}``.

    python benchmarks/toy_quality.py --model PATH [--prompts 200] [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from flowstudio import __version__
from flowstudio.pipeline import GenerationSettings, WanVideoPipeline
from flowstudio.worlds.captions import caption
from flowstudio.worlds.readers import read_background, read_color, read_shape
from flowstudio.worlds.shapes import random_spec, render_clip

RESULTS = Path(__file__).parent / "results"
HELD_OUT_SEED = 10_000  # training uses seeds 0..; this stream is never drawn during training


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def held_out(i: int):
    rng = np.random.default_rng([HELD_OUT_SEED, i])
    spec = random_spec(rng)
    return spec, caption(spec, rng)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--vae-clips", type=int, default=50)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--i2v-clips", type=int, default=50)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--tag", default="toy_quality")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipe = WanVideoPipeline.from_pretrained(args.model, device="cpu")

    # 1. VAE reconstruction
    vae_psnr = []
    for i in range(args.vae_clips):
        clip = render_clip(held_out(i)[0])
        vae_psnr.append(psnr(pipe.decode_latents(pipe.encode_video(clip)), clip))
    print(f"VAE PSNR {np.mean(vae_psnr):.2f} dB over {args.vae_clips} clips")

    # 2. text-to-video attribute accuracy
    hits = {"color": 0, "shape": 0, "background": 0}
    seconds = []
    for i in range(args.prompts):
        spec, text = held_out(100_000 + i)
        settings = GenerationSettings(prompt=text, steps=args.steps, guidance_scale=args.guidance, seed=i)
        start = time.perf_counter()
        frames = pipe.generate(settings, progress=False).frames
        seconds.append(time.perf_counter() - start)
        hits["color"] += read_color(frames)[0] == spec.color
        hits["shape"] += read_shape(frames)[0] == spec.shape
        hits["background"] += read_background(frames)[0] == spec.background
        if (i + 1) % 20 == 0:
            print(
                f"T2V {i + 1}/{args.prompts}: " + ", ".join(f"{k} {v / (i + 1):.0%}" for k, v in hits.items())
            )
    t2v = {k: v / args.prompts for k, v in hits.items()}

    # 3. image-to-video
    i2v_psnr = []
    for i in range(args.i2v_clips):
        spec, text = held_out(200_000 + i)
        clip = render_clip(spec)
        settings = GenerationSettings(
            prompt=text, steps=args.steps, guidance_scale=args.guidance, seed=i, image_conditioned=True
        )
        frames = pipe.generate(settings, image=clip[0], progress=False).frames
        i2v_psnr.append(float(np.mean([psnr(frames[t], clip[t]) for t in range(1, len(clip))])))
    print(f"I2V PSNR frames 1.. {np.mean(i2v_psnr):.2f} dB over {args.i2v_clips} clips")

    result = {
        "settings": {
            "model": str(args.model),
            "steps": args.steps,
            "guidance_scale": args.guidance,
            "solver": "unipc",
            "vae_clips": args.vae_clips,
            "prompts": args.prompts,
            "i2v_clips": args.i2v_clips,
            "held_out_seed": HELD_OUT_SEED,
            "device": "cpu",
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "torch": torch.__version__,
            "flowstudio": __version__,
        },
        "vae_psnr_db": float(np.mean(vae_psnr)),
        "t2v_accuracy": t2v,
        "i2v_psnr_db": float(np.mean(i2v_psnr)),
        "seconds_per_clip": float(np.median(seconds)),
        "bars": {"vae_psnr_db": 30.0, "color": 0.85, "shape": 0.80, "background": 0.80, "i2v_psnr_db": 22.0},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result, indent=2))
    bars = result["bars"]
    rows = [
        ("VAE reconstruction PSNR (dB)", f"{result['vae_psnr_db']:.2f}", ">= 30"),
        ("T2V colour read correctly", f"{t2v['color']:.1%}", ">= 85%"),
        ("T2V shape read correctly", f"{t2v['shape']:.1%}", ">= 80%"),
        ("T2V background read correctly", f"{t2v['background']:.1%}", ">= 80%"),
        ("I2V PSNR, frames 1..16 (dB)", f"{result['i2v_psnr_db']:.2f}", ">= 22"),
        (
            "generation time per clip (s, median, 2 CPU cores)",
            f"{result['seconds_per_clip']:.2f}",
            "reported",
        ),
    ]
    met = [
        result["vae_psnr_db"] >= bars["vae_psnr_db"],
        t2v["color"] >= bars["color"],
        t2v["shape"] >= bars["shape"],
        t2v["background"] >= bars["background"],
        result["i2v_psnr_db"] >= bars["i2v_psnr_db"],
        True,
    ]
    lines = [
        f"# Toy model quality ({args.tag})",
        "",
        f"Settings: `{json.dumps(result['settings'])}`",
        "",
        "| measure | value | bar | met |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {value} | {bar} | {'yes' if ok else 'no'} |"
        for (name, value, bar), ok in zip(rows, met, strict=True)
    ]
    (RESULTS / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
