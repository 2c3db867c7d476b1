"""Invert -> regenerate reconstruction error against steps, for each solver, on a tiny checkpoint.

A smooth synthetic clip is VAE-encoded, inverted to noise with a prompt (no CFG: reconstruction is
only defined for the conditional ODE), regenerated with the same prompt, solver and grid, and
compared with the original latent (MSE) and with the VAE reconstruction of the original (PSNR of
decoded frames, so that VAE loss is not counted). Baseline in the same run: each solver against
the others at the same number of model calls.

Writes ``benchmarks/results/solver_roundtrip.{json,md,png}``.

    python benchmarks/solver_roundtrip.py [--steps 5 10 20 40] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from edit_toy import EVAL_SEED  # noqa: E402  (held-out seed: the editing benchmark's source clips)

from flowstudio import __version__  # noqa: E402
from flowstudio.models.factory import build_tiny_checkpoint  # noqa: E402
from flowstudio.pipeline import WanVideoPipeline  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SOLVERS = ("euler", "dpm++2m", "unipc", "rf-solver", "fireflow")


def synthetic_clip(frames: int = 17, size: int = 64) -> np.ndarray:
    """A soft blob moving over a gradient: smooth, deterministic."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    clip = []
    for t in range(frames):
        cx, cy = 0.3 + 0.4 * t / frames, 0.5
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02)
        clip.append(np.stack([0.2 + 0.6 * blob, 0.3 + 0.4 * xx, 0.4 + 0.4 * yy * (1 - blob)], -1))
    return (np.clip(np.stack(clip), 0, 1) * 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def shapeworld_clips(count: int, frames: int = 17, size: int = 128) -> list[tuple[np.ndarray, str]]:
    """Held-out ShapeWorld clips with their captions (the seed the toy model never saw)."""
    from flowstudio.worlds.captions import caption
    from flowstudio.worlds.dataset import clip_spec
    from flowstudio.worlds.shapes import render_clip

    specs = [clip_spec(EVAL_SEED, i) for i in range(count)]
    return [(render_clip(spec, frames, size, size), caption(spec)) for spec in specs]


def main(name: str = "solver_roundtrip", description: str | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=description or __doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16, 30, 50])
    parser.add_argument("--shift", type=float, default=5.0)
    parser.add_argument(
        "--model", type=Path, default=None, help="checkpoint folder (default: tiny random one)"
    )
    parser.add_argument("--prompt", default="a red bottle turning on a wooden table")
    parser.add_argument(
        "--clips",
        type=int,
        default=0,
        help="held-out ShapeWorld clips (17x128x128, their captions as prompts) instead of the "
        "synthetic clip; the mean over clips is reported. For a trained toy model.",
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_tiny_checkpoint(Path(tmp) / "tiny", seed=0)
        pipe = WanVideoPipeline.from_pretrained(model, device="cpu")
        clips = shapeworld_clips(args.clips) if args.clips else [(synthetic_clip(), args.prompt)]
        prepared = []
        for clip, prompt in clips:
            latents = pipe.encode_video(clip)
            prepared.append(
                (latents, pipe.decode_latents(latents), pipe.conditioning(prompt, guidance_scale=1.0))
            )
        rows = []
        for solver in SOLVERS:
            for steps in args.steps:
                calls, mses, psnrs = 0, [], []
                start = time.perf_counter()
                for latents, reference, cond in prepared:
                    inverted = pipe.solve(
                        latents, cond, steps=steps, shift=args.shift, solver=solver, direction="invert"
                    )
                    regenerated = pipe.solve(inverted.x, cond, steps=steps, shift=args.shift, solver=solver)
                    rec = regenerated.x
                    calls = inverted.model_calls + regenerated.model_calls
                    mses.append(float(((rec - latents) ** 2).mean()))
                    psnrs.append(psnr(pipe.decode_latents(rec), reference))
                seconds = (time.perf_counter() - start) / len(prepared)
                rows.append(
                    {
                        "solver": solver,
                        "steps": steps,
                        "model_calls": calls,
                        "latent_mse": float(np.mean(mses)),
                        "video_psnr_db": float(np.mean(psnrs)),
                        "seconds": round(seconds, 3),
                    }
                )
                print(
                    f"{solver:8s} steps={steps:3d} mse={rows[-1]['latent_mse']:.3e} "
                    f"psnr={rows[-1]['video_psnr_db']:.2f} dB"
                )
        model_desc = (
            str(args.model) if args.model else "tiny random-weight Wan2.2-TI2V-form checkpoint (seed 0)"
        )

    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {
        "model": model_desc,
        "clip": f"{args.clips} held-out ShapeWorld clips 17x128x128 (seed {EVAL_SEED}), captions as prompts"
        if args.clips
        else "synthetic 17x64x64",
        "shift": args.shift,
        "prompt": "each clip's caption" if args.clips else args.prompt,
        "guidance_scale": 1.0,
        "steps": args.steps,
        "device": "cpu",
        "torch": torch.__version__,
        "machine": platform.machine(),
        "flowstudio": __version__,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))

    lines = [
        f"# {name.replace('_', ' ').capitalize()} (invert -> regenerate)",
        "",
        f"Settings: `{json.dumps(settings)}`",
        "",
        "| solver | steps | model calls | latent MSE | video PSNR (dB) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['solver']} | {r['steps']} | {r['model_calls']} | {r['latent_mse']:.3e} | "
        f"{r['video_psnr_db']:.2f} |"
        for r in rows
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for solver in SOLVERS:
        sub = [r for r in rows if r["solver"] == solver]
        axes[0].loglog([r["steps"] for r in sub], [r["latent_mse"] for r in sub], "o-", label=solver)
        axes[1].semilogx([r["steps"] for r in sub], [r["video_psnr_db"] for r in sub], "o-", label=solver)
    axes[0].set(xlabel="steps", ylabel="latent MSE", title="round-trip latent error")
    axes[1].set(xlabel="steps", ylabel="PSNR (dB)", title="round-trip video PSNR")
    for ax in axes:
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=100)
    print(f"wrote {RESULTS / f'{name}.md'}")


if __name__ == "__main__":
    main()
