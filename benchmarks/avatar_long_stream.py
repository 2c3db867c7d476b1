"""DualForce long stream: per-chunk time and KV-cache size stay flat past the old rotary limit.

Keys used to be cached at absolute rotary positions, so a stream stopped at 16384 positions (the
25 Hz structure stream: 4096 chunks of 0.16 s, ~11 min). The cache now re-rotates the keys it keeps
to window-relative positions on eviction. This streams the packaged toy model (random toy weights
when it is absent) at its real chunk size on one CPU thread (its own step count, or ``--steps``), for
up to one hour of audio or until ``--minutes`` of compute, whichever comes first, and reports the
per-chunk time of the first vs the last decile of chunks (wall and thread CPU time), the same for
the stream's next ``--pairs`` chunks run in turn with a fresh stream's chunks on the same model (both
under the same load: the clean comparison on a shared core), the cache bytes (peak and steady) and
the process memory. Latents only (no decoding: the codec does not touch the cache). Writes
``benchmarks/results/avatar_long_stream.{json,md}``.

    python benchmarks/avatar_long_stream.py [--minutes 6] [--steps N] [--pairs 200] [--hours 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from _results import write_results

from flowstudio import __version__
from flowstudio.avatar.inference.generate import load_model
from flowstudio.avatar.inference.streaming import Chunk, stream_latents
from flowstudio.avatar.model.dualforce import DualForceModel

OLD_LIMIT = 16384  # rope_max_positions: where absolute positions stopped a stream


def _rss_mib() -> float:
    """Resident memory of this process now (Linux /proc), MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=6.0, help="compute budget (wall clock)")
    parser.add_argument("--hours", type=float, default=1.0, help="audio length to stream at most")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--pairs", type=int, default=200, help="interleaved late/early chunk pairs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, random_weights = load_model(None)
    cfg, rates = model.config, model.rates
    h, w = cfg.latent_size
    max_chunks = int(args.hours * 3600 / rates.chunk_seconds())
    generator = torch.Generator().manual_seed(args.seed)
    reference = torch.randn(1, cfg.video_input.latent_channels, 1, h, w, generator=generator)
    audio_chunks = max_chunks + args.pairs  # the interleaved comparison continues the stream
    audio = torch.randn(rates.span(audio_chunks - 1).audio[1], cfg.audio.feature_dim, generator=generator)

    infos: list[dict[str, float]] = []
    cpu: list[float] = []  # this thread's CPU seconds per chunk: less sensitive to other processes
    rss: list[float] = []
    finite = True
    start, last_cpu = time.perf_counter(), time.thread_time()
    steps = args.steps or cfg.forcing.inference_steps
    stream = stream_latents(model, reference, audio, steps=steps, generator=generator, callback=infos.append)
    for chunk in stream:
        now = time.thread_time()
        cpu.append(now - last_cpu)
        last_cpu = now
        finite &= bool(torch.isfinite(chunk.video).all() and torch.isfinite(chunk.struct).all())
        if chunk.index % 100 == 0:
            rss.append(_rss_mib())
        if time.perf_counter() - start > 60 * args.minutes or len(infos) == max_chunks:
            break
    wall = time.perf_counter() - start
    rss.append(_rss_mib())

    chunks = len(infos)
    seconds = np.array([i["seconds"] for i in infos])
    decile = max(1, chunks // 10)
    window = cfg.forcing.window_chunks
    steady = [i["cache_bytes"] for i in infos[window:]]
    span = rates.span(chunks - 1)
    paired = _late_vs_early(model, stream, reference, audio, steps, args.pairs)  # after the counts above
    struct_positions, video_positions = 1 + span.struct[1], 1 + span.latent[1]
    result = {
        "settings": {
            "model": "packaged toy DualForce" if not random_weights else "toy config, random weights",
            "frames_per_chunk": rates.frames_per_chunk,
            "chunk_seconds": rates.chunk_seconds(),
            "steps_per_chunk": steps,
            "window_chunks": window,
            "minutes_budget": args.minutes,
            "hours_asked": args.hours,
            "threads": args.threads,
            "seed": args.seed,
            "device": "cpu",
            "machine": platform.machine(),
            "torch": torch.__version__,
            "flowstudio": __version__,
        },
        "chunks": chunks,
        "stream_seconds": float(span.seconds[1]),
        "stream_fraction_of_hour": float(span.seconds[1]) / 3600,
        "wall_seconds": wall,
        "absolute_positions": {"video": video_positions, "struct": struct_positions},
        "old_limit": OLD_LIMIT,
        "past_old_limit": max(video_positions, struct_positions) > OLD_LIMIT,
        "position_shift_at_end": infos[chunks - 1]["position_shift"],
        "per_chunk_ms": _deciles(seconds, decile),
        "per_chunk_cpu_ms": _deciles(np.array(cpu[1:]), decile),  # the first includes the sink commit
        "cache_bytes": {
            "peak": max(i["cache_bytes"] for i in infos),
            "steady_min": min(steady),
            "steady_max": max(steady),
            "tokens_steady": sorted({i["cache_tokens"] for i in infos[window:]}),
        },
        "rss_mib": {"after_100_chunks": rss[min(1, len(rss) - 1)], "end": rss[-1], "max": max(rss)},
        "late_vs_early_interleaved": paired,
        "outputs_finite": finite,
    }
    write_results("avatar_long_stream", result, _markdown(result).splitlines())
    print(json.dumps(result, indent=2))


def _late_vs_early(
    model: DualForceModel,
    late: Iterator[Chunk],
    reference: torch.Tensor,
    audio: torch.Tensor,
    steps: int,
    pairs: int,
) -> dict[str, float]:
    """Chunks of the long stream against chunks of a fresh stream (past its first eviction), one of
    each in turn on the same model: both see the same load on the core, so their ratio isolates what
    the stream's length costs (deciles of one run also see the load change over the run)."""
    times: dict[str, list[float]] = {"late": [], "early": []}

    def timed(key: str, stream: Iterator[Chunk]) -> None:
        start = time.perf_counter()
        next(stream)
        times[key].append(time.perf_counter() - start)

    early = stream_latents(model, reference, audio, steps=steps, generator=torch.Generator().manual_seed(1))
    for _ in range(model.config.forcing.window_chunks + 2):  # fill the window and evict once first
        next(early)
    for _ in range(pairs):
        timed("late", late)
        timed("early", early)
    late_ms, early_ms = 1000 * float(np.median(times["late"])), 1000 * float(np.median(times["early"]))
    ratio = late_ms / early_ms
    return {"pairs": pairs, "late_median_ms": late_ms, "early_median_ms": early_ms, "late_over_early": ratio}


def _deciles(seconds: np.ndarray, decile: int) -> dict[str, float]:
    """Median of the first and last decile of chunks (ms), their ratio, mean and p99."""
    first, last = float(np.median(seconds[:decile])), float(np.median(seconds[-decile:]))
    return {
        "first_decile_median": 1000 * first,
        "last_decile_median": 1000 * last,
        "last_over_first": last / first,
        "mean": 1000 * float(seconds.mean()),
        "p99": 1000 * float(np.quantile(seconds, 0.99)),
    }


def _markdown(r: dict) -> str:
    t, u, c, s = r["per_chunk_ms"], r["per_chunk_cpu_ms"], r["cache_bytes"], r["settings"]
    minutes = r["stream_seconds"] / 60
    passed = "passed" if r["past_old_limit"] else "not reached"
    rss, pair = r["rss_mib"], r["late_vs_early_interleaved"]
    covered = (
        "one hour of audio"
        if r["stream_fraction_of_hour"] >= 1
        else f"{minutes:.1f} min of audio ({100 * r['stream_fraction_of_hour']:.0f}% of an hour: "
        f"the {s['minutes_budget']:g}-minute compute budget ran out first)"
    )
    return f"""# DualForce long stream: flat per-chunk time and cache past the old rotary limit

Settings: `{json.dumps(s)}`

- {r["chunks"]} chunks = {covered}, in {r["wall_seconds"] / 60:.1f} min of compute
- absolute positions reached: video {r["absolute_positions"]["video"]}, structure
  {r["absolute_positions"]["struct"]} (old limit {r["old_limit"]}: {passed});
  keys moved back by {r["position_shift_at_end"]} positions in total, cached positions stay window-relative
- per-chunk CPU time of the streaming thread, median of the first decile of chunks
  {u["first_decile_median"]:.1f} ms, of the last decile {u["last_decile_median"]:.1f} ms: last / first =
  **{u["last_over_first"]:.3f}** (mean {u["mean"]:.1f} ms, p99 {u["p99"]:.1f} ms)
- per-chunk wall time (includes waiting for the core when other processes run on it): first decile
  {t["first_decile_median"]:.1f} ms, last decile {t["last_decile_median"]:.1f} ms: last / first =
  {t["last_over_first"]:.3f} (mean {t["mean"]:.1f} ms, p99 {t["p99"]:.1f} ms)
- **interleaved on one model, chunk by chunk** ({pair["pairs"]} pairs, same load on the core for
  both): the long stream's next chunks {pair["late_median_ms"]:.1f} ms, a fresh stream's chunks (window
  full, evicted once) {pair["early_median_ms"]:.1f} ms (medians): late / early =
  **{pair["late_over_early"]:.3f}**
- KV cache: peak {c["peak"]} bytes; from the full window on between {c["steady_min"]} and
  {c["steady_max"]} bytes ({c["tokens_steady"]} video tokens)
- process memory (RSS): {rss["after_100_chunks"]:.0f} MiB after 100 chunks, {rss["end"]:.0f} MiB
  at the end (max {rss["max"]:.0f} MiB; the hour of random audio features is allocated up front)
- all outputs finite: {r["outputs_finite"]}

Reproduce: `OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/avatar_long_stream.py --minutes
{s["minutes_budget"]:g} --steps {s["steps_per_chunk"]} --pairs {pair["pairs"]}`
"""


if __name__ == "__main__":
    main()
