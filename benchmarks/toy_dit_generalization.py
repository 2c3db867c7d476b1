"""Does the toy transformer generalise or memorise? Its flow-matching loss on clips it trained on against
clips of the same world it never saw, at fixed noise levels, with the same noise.

    python benchmarks/toy_dit_generalization.py --model flowstudio/assets/toy-shapes --clips 48

The training clips are clips ``0..N-1`` of the run's ``clip`` stream (``training_summary.json``'s seed:
exactly the latent cache the transformer was trained on, re-encoded with the model's VAE); the unseen
clips are clips from far past the cache (index 10**6 + i) of the same stream, so the same world and
caption distribution. Text-to-video rows only (no pinned first frame), the clip's own caption, noise
seeded per (clip, level). A held-out loss well above the training loss at the levels where the layout
is decided (sigma >= 0.5) means the transformer memorised its cache and more distinct clips would help;
equal losses mean it is capacity or compute. Writes ``benchmarks/results/<tag>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
UNSEEN_OFFSET = 10**6


def run_config(model: Path):
    """The ``ShapesTrainConfig`` of the run that made the toy model folder ``model``."""
    from flowstudio.worlds.train_shapes import ShapesTrainConfig

    summary = json.loads((model / "training_summary.json").read_text())
    fields = set(ShapesTrainConfig.__dataclass_fields__)
    return ShapesTrainConfig(**{k: v for k, v in summary["config"].items() if k in fields})


@torch.no_grad()
def flow_matching_losses(
    denoiser, x0: torch.Tensor, states: torch.Tensor, index: int, sigmas: list[float]
) -> list[float]:
    """Flow-matching MSE of one clip's normalised latent ``x0`` with caption states ``states`` at each
    level, as the trainer computes it for a T2V row; the noise is seeded by (clip ``index``, level)."""
    from flowstudio.core.flow import add_noise

    out = []
    for col, sigma in enumerate(sigmas):
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(index * 100 + col))
        x_t = add_noise(x0, noise, sigma)
        v = denoiser.forward_rows(x_t, denoiser.row_timesteps(torch.full((1,), sigma)), states, {})
        out.append(float((v - (noise - x0)).pow(2).mean()))
    return out


def losses(components, config, indices: list[int], sigmas: list[float]) -> np.ndarray:
    """Flow-matching MSE per (clip, sigma) of the run's clips ``indices`` with their own captions."""
    from flowstudio.denoiser import WanDenoiser
    from flowstudio.worlds.train_shapes import _encode_clip

    denoiser = WanDenoiser(components.transformer)
    out = np.zeros((len(indices), len(sigmas)))
    for row, index in enumerate(indices):
        x0, embeds, _ = _encode_clip(components, config, index, torch.device("cpu"))
        out[row] = flow_matching_losses(denoiser, x0, embeds[None].float(), index, sigmas)
    return out


def main() -> None:
    from flowstudio.weights import load_components

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="toy model folder (training_summary.json)")
    parser.add_argument("--clips", type=int, default=48, help="clips per set (trained-on and unseen)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--tag", default="toy_dit_generalization")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = run_config(args.model)
    if args.clips > config.num_clips:
        raise SystemExit(f"--clips {args.clips} exceeds the {config.num_clips} clips the model trained on")
    components = load_components(args.model, device="cpu", dtype=torch.float32)
    step = config.num_clips // args.clips
    seen = [i * step for i in range(args.clips)]
    unseen = [UNSEEN_OFFSET + i for i in range(args.clips)]
    a = losses(components, config, seen, args.sigmas)
    b = losses(components, config, unseen, args.sigmas)
    rows = []
    for col, sigma in enumerate(args.sigmas):
        diff = b[:, col] - a[:, col]
        rows.append(
            {
                "sigma": sigma,
                "trained_on": float(a[:, col].mean()),
                "trained_on_sem": float(a[:, col].std(ddof=1) / np.sqrt(len(a))),
                "unseen": float(b[:, col].mean()),
                "unseen_sem": float(b[:, col].std(ddof=1) / np.sqrt(len(b))),
                "ratio": float(b[:, col].mean() / a[:, col].mean()),
                "difference_sem": float(
                    np.sqrt(a[:, col].var(ddof=1) / len(a) + b[:, col].var(ddof=1) / len(b))
                ),
                "difference": float(diff.mean()),
            }
        )
    result = {
        "settings": {
            "model": str(args.model),
            "clips": args.clips,
            "sigmas": args.sigmas,
            "num_clips_trained_on": config.num_clips,
            "dit_steps": config.dit_steps,
            "dit_batch": config.dit_batch,
            "machine": platform.machine(),
            "torch": torch.__version__,
        },
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# {args.tag}",
        "",
        f"`python benchmarks/toy_dit_generalization.py --model {args.model} --clips {args.clips}`: the "
        f"transformer's flow-matching loss (T2V rows) on {args.clips} of the {config.num_clips} clips it "
        f"trained on ({config.dit_steps} steps x batch {config.dit_batch}, about "
        f"{config.dit_steps * config.dit_batch / config.num_clips:.0f} passes over each) and on {args.clips} "
        "unseen clips of the same world; the same noise per clip and level. +- is the standard error.",
        "",
        "| sigma | trained-on clips | unseen clips | unseen / trained-on |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sigma']:.1f} | {r['trained_on']:.4f} +- {r['trained_on_sem']:.4f} | "
            f"{r['unseen']:.4f} +- {r['unseen_sem']:.4f} | {r['ratio']:.2f} |"
        )
    (RESULTS / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
