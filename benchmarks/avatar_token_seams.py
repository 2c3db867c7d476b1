"""The token mosaic over a rollout: how sharp the seams between transformer tokens are, chunk by chunk.

    python benchmarks/avatar_token_seams.py --model NAME=CHECKPOINT [--model ...] \
        --clips 4 --chunks 16 --tag avatar_token_seams

DualForce's video tower reads the latent in patches of ``patch_size`` (2x2 latent pixels at the toy's
config): one token each. A model whose rollout drifts draws every token as its own flat cell, and the
decoded frames become a mosaic (``docs/findings_avatar.md``). The *seam ratio* measures it directly in the
latent: the mean squared difference between neighbouring latent pixels that sit in two different
tokens, over the same between pixels of one token (horizontal and vertical pairs together). The truth
has its own ratio (the world's faces are not blind to the grid), so every figure is read against the
truth's on the same clips: a mosaic shows as a ratio above the truth's that grows with the chunk index.

Clips are TalkingShapes items of ``--seed`` (not a training seed), streamed with each checkpoint's own
sampler defaults (its ``forcing.context_sigma`` and ``forcing.audio_guidance``; ``--context-sigma`` /
``--audio-guidance`` override them for every model), noise seed 0. Writes ``benchmarks/results/<tag>.json``
(per chunk, per model, with the settings), ``<tag>.md`` (the table by chunk ranges) and ``<tag>.png``
(the ratio against the chunk index).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
RANGES = ((0, 1), (1, 4), (4, 8), (8, 16), (16, 32), (32, 64))


def seam_ratio(latent: torch.Tensor, patch: tuple[int, int]) -> float:
    """Across-token over within-token mean squared neighbour difference of ``latent`` ``(C, F, h, w)``."""
    ph, pw = patch
    dx = (
        latent[..., :, 1:] - latent[..., :, :-1]
    ) ** 2  # pair (j, j + 1) crosses a seam when j % pw == pw - 1
    dy = (latent[..., 1:, :] - latent[..., :-1, :]) ** 2
    cross_x = (torch.arange(dx.shape[-1]) % pw) == pw - 1
    cross_y = (torch.arange(dy.shape[-2]) % ph) == ph - 1
    across = torch.cat([dx[..., cross_x].flatten(), dy[..., cross_y, :].flatten()])
    within = torch.cat([dx[..., ~cross_x].flatten(), dy[..., ~cross_y, :].flatten()])
    return float(across.mean() / within.mean().clamp_min(1e-12))


def measure(
    checkpoint: str,
    clips: int,
    chunks: int,
    seed: int,
    audio_guidance: float | None,
    context_sigma: float | None,
) -> dict:
    """Per-chunk seam ratios of the generated and the true latents, averaged over ``clips``."""
    from flowstudio.avatar.inference.streaming import sampling, stream_latents
    from flowstudio.avatar.model.dualforce import DualForceModel
    from flowstudio.avatar.model.rates import TokenRates
    from flowstudio.avatar.training.toy_data import TalkingShapesDataset

    model = DualForceModel.from_pretrained(checkpoint).eval()
    cfg = model.config
    patch = tuple(cfg.video.patch_size[1:])
    data = TalkingShapesDataset(cfg, chunks, clips, seed)
    rates = TokenRates.from_config(cfg.rates)
    generated, truth = torch.zeros(chunks), torch.zeros(chunks)
    start = time.perf_counter()
    for index in range(clips):
        item = data[index]
        made = stream_latents(
            model,
            item["video"][None, :, :1],
            item["audio"][1:],
            generator=torch.Generator().manual_seed(0),
            audio_guidance=audio_guidance,
            context_sigma=context_sigma,
        )
        for chunk in made:
            a, b = rates.span(chunk.index).latent
            generated[chunk.index] += seam_ratio(chunk.video[0], patch) / clips
            truth[chunk.index] += seam_ratio(item["video"][:, 1 + a : 1 + b], patch) / clips
    forcing = sampling(cfg.forcing, audio_guidance, context_sigma)
    return {
        "checkpoint": checkpoint,
        "context_sigma": forcing.context_sigma,
        "audio_guidance": forcing.audio_guidance,
        "generated": [round(float(v), 4) for v in generated],
        "truth": [round(float(v), 4) for v in truth],
        "seconds": round(time.perf_counter() - start, 1),
    }


def _mean(values: list[float], low: int, high: int) -> float | None:
    part = values[low:high]
    return sum(part) / len(part) if part else None


def write(tag: str, settings: dict, rows: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{tag}.json").write_text(json.dumps({"settings": settings, "models": rows}, indent=1))
    chunks = settings["chunks"]
    ranges = [(a, min(b, chunks)) for a, b in RANGES if a < chunks]
    head = " | ".join(f"chunks {a}-{b - 1}" if b - a > 1 else f"chunk {a}" for a, b in ranges)
    lines = [
        f"# Token seams over the rollout ({tag})",
        "",
        f"Settings: `{json.dumps(settings)}`",
        "",
        "Seam ratio (across-token / within-token squared neighbour difference of the latent); the truth's is",
        "the same clips' true latents. A mosaic is a ratio above the truth's, growing with the chunk.",
        "",
        f"| model (C, S) | {head} |",
        "|---|" + "---|" * len(ranges),
    ]
    first = next(iter(rows.values()))
    lines.append("| truth | " + " | ".join(f"{_mean(first['truth'], a, b):.2f}" for a, b in ranges) + " |")
    for name, row in rows.items():
        cells = " | ".join(f"{_mean(row['generated'], a, b):.2f}" for a, b in ranges)
        lines.append(f"| {name} ({row['context_sigma']}, {row['audio_guidance']}) | {cells} |")
    (RESULTS / f"{tag}.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(first["truth"], "k--", label="truth")
    for name, row in rows.items():
        ax.plot(row["generated"], label=name)
    ax.set_xlabel("chunk (0.64 s each)")
    ax.set_ylabel("seam ratio (across / within token)")
    ax.set_title("token seams over the rollout")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{tag}.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", required=True, help="NAME=CHECKPOINT folder")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--seed", type=int, default=4242, help="TalkingShapes seed of the clips (held out)")
    parser.add_argument("--audio-guidance", type=float, default=None)
    parser.add_argument("--context-sigma", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tag", default="avatar_token_seams")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    specs = dict(spec.split("=", 1) for spec in args.model)
    rows = {
        name: measure(path, args.clips, args.chunks, args.seed, args.audio_guidance, args.context_sigma)
        for name, path in specs.items()
    }
    settings = {
        "clips": args.clips,
        "chunks": args.chunks,
        "seed": args.seed,
        "noise_seed": 0,
        "threads": args.threads,
        "machine": platform.machine(),
        "torch": torch.__version__,
    }
    write(args.tag, settings, rows)
    print((RESULTS / f"{args.tag}.md").read_text())


if __name__ == "__main__":
    main()
