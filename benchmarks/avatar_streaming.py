"""DualForce streaming speed: per-chunk latency with the KV cache against recomputing the prefix.

Toy config, random weights (speed does not depend on the weights), CPU. Baseline in the same run:
without a cache, generating chunk ``c`` means running every denoising step over the sink and all
``c`` chunks so far (block-causal full-sequence forward), so its cost grows with ``c``; with the
cache each chunk costs the same. Also: first-chunk latency and the real-time factor
(seconds of audio per second of compute). Writes ``benchmarks/results/avatar_streaming.{json,md,png}``.

    python benchmarks/avatar_streaming.py [--chunks 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from flowstudio import __version__  # noqa: E402
from flowstudio.avatar.evaluation.verify import random_inputs  # noqa: E402
from flowstudio.avatar.inference.streaming import stream_latents  # noqa: E402
from flowstudio.avatar.model.config import toy_config  # noqa: E402
from flowstudio.avatar.model.diffusion_forcing import chunk_schedule  # noqa: E402
from flowstudio.avatar.model.dualforce import DualForceModel  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--baseline-at", type=int, nargs="+", default=[1, 10, 25, 50, 75, 100])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = DualForceModel(toy_config()).eval()
    cfg, rates = model.config, model.rates
    steps = len(chunk_schedule(cfg.forcing, None)[0]) - 1
    h, w = cfg.latent_size
    reference = torch.randn(1, cfg.video_input.latent_channels, 1, h, w)
    audio = torch.randn(rates.span(args.chunks - 1).audio[1], cfg.audio.feature_dim)

    # 1. with the KV cache: the streaming generator itself
    cached: list[float] = []
    start = time.perf_counter()
    first_chunk = None
    for chunk in stream_latents(
        model, reference, audio, callback=lambda info: cached.append(info["seconds"])
    ):
        if first_chunk is None:
            first_chunk = time.perf_counter() - start  # includes committing the sink
        del chunk
    total = time.perf_counter() - start
    audio_seconds = float(rates.span(args.chunks - 1).seconds[1])

    # 2. without a cache: every step re-runs the whole block-causal prefix
    uncached: dict[int, float] = {}
    with torch.no_grad():
        for c in sorted({min(c, args.chunks) for c in args.baseline_at}):
            inputs = random_inputs(model, c, generator=torch.Generator().manual_seed(c))
            begin = time.perf_counter()
            for _ in range(steps):
                model(inputs)
            uncached[c] = time.perf_counter() - begin

    ratios = {c: uncached[c] / float(np.median(cached[max(0, c - 3) : c + 2])) for c in uncached}
    result = {
        "settings": {
            "config": "toy",
            "weights": "random (seed 0)",
            "chunks": args.chunks,
            "steps_per_chunk": steps,
            "latent_frames_per_chunk": rates.frames_per_chunk,
            "threads": args.threads,
            "device": "cpu",
            "machine": platform.machine(),
            "torch": torch.__version__,
            "flowstudio": __version__,
        },
        "cached_chunk_seconds": cached,
        "uncached_chunk_seconds": {str(c): s for c, s in uncached.items()},
        "uncached_over_cached": {str(c): r for c, r in ratios.items()},
        "first_chunk_seconds": first_chunk,
        "audio_seconds": audio_seconds,
        "wall_seconds": total,
        "real_time_factor": audio_seconds / total,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "avatar_streaming.json").write_text(json.dumps(result, indent=2))
    first10, last10 = float(np.median(cached[:10])), float(np.median(cached[-10:]))
    lines = [
        "# DualForce streaming: KV cache vs recomputing the prefix",
        "",
        f"Settings: `{json.dumps(result['settings'])}`",
        "",
        f"- {args.chunks} chunks = {audio_seconds:.1f} s of audio in {total:.2f} s: real-time factor "
        f"**{result['real_time_factor']:.2f}x** (> 1 is faster than real time)",
        f"- first chunk ready after {first_chunk * 1000:.0f} ms (sink commit included)",
        f"- cached per-chunk latency: median of the first 10 chunks {first10 * 1000:.1f} ms, "
        f"of the last 10 {last10 * 1000:.1f} ms (flat)",
        "",
        "| chunk index | without cache (ms) | with cache (ms) | speed-up |",
        "|---|---|---|---|",
    ]
    for c in sorted(uncached):
        lines.append(
            f"| {c} | {uncached[c] * 1000:.1f} | {uncached[c] / ratios[c] * 1000:.1f} | {ratios[c]:.1f}x |"
        )
    (RESULTS / "avatar_streaming.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(cached) + 1), np.array(cached) * 1000, label="with KV cache")
    ax.plot(
        sorted(uncached),
        [uncached[c] * 1000 for c in sorted(uncached)],
        "o-",
        label="without (prefix recompute)",
    )
    ax.set(xlabel="chunk index", ylabel="ms per chunk", title="DualForce toy streaming latency")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "avatar_streaming.png", dpi=90)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
