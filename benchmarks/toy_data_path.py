"""The toy model's data path: host time per transformer batch and latent-cache clips per second.

Why: on an H200 the toy recipe was host-bound (docs/gpu.md): a transformer step took 0.10 s at batch 64
where its arithmetic is 1-2 ms, and the latent cache 40 ms per clip. This measures, on the machine it
runs on, the two data paths the recipe can choose between, in the same run:

- **transformer batches** (``dit_batches_on``): ``HostBatches`` (numpy on the host, every CPU run) and
  ``DeviceBatches`` (torch on the training device) at several batch sizes, over a cache of the recipe's
  shape (random values: the time does not depend on them). Host batches cost the host this time on any
  machine, GPU or not; device batches on ``--device cpu`` cost the CPU what the device does on a GPU
  (there the host only launches a handful of kernels: time it on the GPU with gpu_toy_train.py's probe);
- **the latent cache** (``cache_batch``): clips per second encoded by the real ``encode_clips`` with the
  model's VAE and text encoder, one clip per call against ``cache_batch`` per call, rendering excluded
  (reported on its own line).

    python benchmarks/toy_data_path.py --model flowstudio/assets/toy-shapes
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _results import machine_info, write_results

from flowstudio.worlds import train_shapes as ts

RECIPE = Path(__file__).resolve().parent.parent / "configs" / "toy" / "shapes_gpu.yaml"


def _best_seconds(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls (after one warm-up): the figure least touched by other load."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def batch_rows(
    config: ts.ShapesTrainConfig, batches: list[int], clips: int, repeats: int, device: torch.device
) -> list[dict[str, Any]]:
    """Seconds per transformer batch, host and device draws, at each batch size."""
    latent_shape = torch.Size(
        (clips, 48, (config.num_frames - 1) // 4 + 1, config.height // 16, config.width // 16)
    )
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(6, 24, (clips,), generator=gen).tolist()
    embeds = [torch.randn(n, config.text_dim, generator=gen).half() for n in lengths]
    empty = torch.randn(1, config.text_dim, generator=gen)
    rows = []
    for batch in batches:
        sized = ts.ShapesTrainConfig(**{**config.__dict__, "dit_batch": batch})
        host = ts.HostBatches(sized, latent_shape, embeds, empty)
        on_device = ts.DeviceBatches(sized, latent_shape, embeds, empty, device)
        host_s = _best_seconds(lambda h=host: h(3), repeats)
        device_s = _best_seconds(lambda d=on_device: d(3), repeats)
        rows.append({"batch": batch, "host_s": host_s, "device_s": device_s, "ratio": host_s / device_s})
    return rows


def cache_rows(
    model: Path, config: ts.ShapesTrainConfig, sizes: list[int], clips: int, device: torch.device
) -> tuple[float, list[dict[str, Any]]]:
    """Seconds to render one clip, and clips per second encoded at each ``cache_batch``."""
    from flowstudio.weights import load_components

    components = load_components(model, device=device, dtype=torch.float32)
    start = time.perf_counter()
    rendered = [ts.cache_clip(config, i) for i in range(clips)]
    render_s = (time.perf_counter() - start) / clips
    rows = []
    for size in sizes:
        chunks = [rendered[i : i + size] for i in range(0, clips, size)]
        ts.encode_clips(components, chunks[0], device)  # warm-up at this batch shape
        start = time.perf_counter()
        for chunk in chunks:
            ts.encode_clips(components, chunk, device)
        seconds = time.perf_counter() - start
        rows.append({"cache_batch": size, "clips": clips, "seconds": seconds, "clips_per_s": clips / seconds})
    base = rows[0]["clips_per_s"]
    for row in rows:
        row["ratio"] = row["clips_per_s"] / base
    return render_s, rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("flowstudio/assets/toy-shapes"))
    parser.add_argument("--config", type=Path, default=RECIPE, help="the recipe whose shapes are timed")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--cache-clips", type=int, default=4000, help="clips in the simulated cache")
    parser.add_argument("--cache-batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--encode-clips", type=int, default=64, help="clips encoded per cache_batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--tag", default="toy_data_path")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    config = ts.ShapesTrainConfig.from_yaml(args.config)
    batches = batch_rows(config, args.batches, args.cache_clips, args.repeats, device)
    render_s, cache = cache_rows(args.model, config, args.cache_batches, args.encode_clips, device)
    record = {
        "settings": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}},
        "machine": machine_info(),
        "transformer_batches": batches,
        "render_s_per_clip": render_s,
        "latent_cache": cache,
    }
    lines = [
        f"# The toy model's data path ({args.config.name} shapes, device {device})",
        "",
        f"Command: `python benchmarks/toy_data_path.py --model {args.model}` "
        f"({machine_info()['threads']} torch threads; best of {args.repeats} after a warm-up).",
        "",
        "| transformer batch | host batch (numpy), ms | device batch (torch on "
        f"{device.type}), ms | host / device |",
        "|---|---|---|---|",
        *(
            f"| {r['batch']} | {1e3 * r['host_s']:.1f} | {1e3 * r['device_s']:.1f} | {r['ratio']:.1f}x |"
            for r in batches
        ),
        "",
        "A host batch costs the host this time on any machine; a device batch on a GPU costs the host a "
        "handful of kernel launches instead (timed there by gpu_toy_train.py's probe).",
        "",
        f"Rendering a clip: {1e3 * render_s:.1f} ms (one process; `data_workers` render in parallel).",
        "",
        "| cache_batch | clips | seconds | clips / s | vs one per call |",
        "|---|---|---|---|---|",
        *(
            f"| {r['cache_batch']} | {r['clips']} | {r['seconds']:.2f} | {r['clips_per_s']:.1f} | "
            f"{r['ratio']:.2f}x |"
            for r in cache
        ),
    ]
    kwargs = {"out": args.results} if args.results else {}
    write_results(args.tag, record, lines, **kwargs)
    print("\n".join(lines))
    return record


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
