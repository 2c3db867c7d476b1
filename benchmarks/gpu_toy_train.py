"""Train the ShapeWorld toy model on one GPU inside a time budget: one command, steps sized on the GPU.

Issue 13 asks for a recipe that retrains the toy model at full size on one GPU in under 10 minutes.
How many steps fit depends on the GPU, on how many CPU cores render clips, and on launch overheads
that no CPU measurement predicts, so this command measures them first and sizes the run:

1. **Probe** (about a minute): the real training code (``train_vae``, ``build_latent_cache``,
   ``train_transformer`` of :mod:`flowstudio.worlds.train_shapes`) runs a few steps of each stage at
   the recipe's sizes and batches on a throwaway copy of the untrained model; a step's time is the
   difference between a short and a longer run (so worker start-up and the first CUDA calls cancel).
2. **Size**: the recipe's ``vae_steps`` (its share of whole-clip steps kept), ``num_clips`` and
   ``dit_steps`` are set so that the three stages fill ``--minutes`` minus the probe and a reserve,
   ``--vae-share`` of the training time going to the VAE. The sized recipe is written as YAML.
3. **Train** with ``flowstudio.worlds.train_shapes.train_shapes`` into ``--out`` (``--out``/model is a
   diffusers folder). A hard stop at the deadline saves state; if the transformer stage was cut, its
   last checkpoint is exported as a snapshot (marked so in the model's ``training_summary.json``).
4. **Report** ``<results>/<tag>.{json,md}``: the GPU, the probe's step times, the sized steps, each
   stage's seconds, the VAE's held-out PSNR curve and the final losses. Quality is measured afterwards
   with ``benchmarks/toy_quality.py`` (on any machine).

    python benchmarks/gpu_toy_train.py --minutes 9 --out outputs/toy-shapes-gpu
    python benchmarks/gpu_toy_train.py --device cpu --tiny --minutes 1 --out /tmp/gpu_toy   # the test's path
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from _results import machine_info, write_results

from flowstudio.train import Budget
from flowstudio.worlds import train_shapes as ts

logger = logging.getLogger("gpu_toy_train")
RECIPE = Path(__file__).resolve().parent.parent / "configs" / "toy" / "shapes_gpu.yaml"
#: Fields the sizing sets; every other field is the recipe's.
SIZED_FIELDS = ("vae_steps", "vae_full_clip_steps", "num_clips", "dit_steps")
#: Seconds before the deadline at which training stops (state saved) so that the export still fits.
STOP_MARGIN_S = 15.0
#: The tiny sizes of ``--tiny`` (the CPU test of this script's whole path).
TINY = {
    "num_layers": 1,
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "ffn_dim": 32,
    "freq_dim": 16,
    "text_dim": 16,
    "text_encoder_layers": 1,
    "text_encoder_heads": 2,
    "vae_base_dim": 8,
    "vae_decoder_base_dim": 8,
    "num_frames": 5,
    "height": 32,
    "width": 32,
    "vae_batch": 1,
    "vae_crop_frames": 5,
    "vae_crop_size": 32,
    "vae_full_clip_batch": 1,
    "dit_batch": 2,
    "cache_batch": 2,
    "stats_clips": 2,
    "data_workers": 0,
    "eval_every": 0,
    "checkpoint_every": 20,
    "mixed_precision": "no",
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(device: torch.device, fn) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def probe(
    config: ts.ShapesTrainConfig,
    device: torch.device,
    work: Path,
    short: int,
    long: int,
    dit_batches: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Seconds per VAE step (crops; whole clips), per clip of the latent cache and per transformer step,
    each from the real stage code at ``config``'s sizes: (time of ``long`` steps - time of ``short``)
    / (``long`` - ``short``). ``dit_batches``: other transformer batch sizes to time as well
    (``dit_step_s_by_batch``; informative: the sizing uses the recipe's batch)."""
    from flowstudio.weights import load_components

    if work.exists():  # a probe folder left by an earlier run: its states would resume, not time
        shutil.rmtree(work)
    init = work / "init"
    ts.build_init(config, init)
    components = load_components(init, device=device, dtype=torch.float32)
    components.text_encoder.requires_grad_(False)
    quiet = {"eval_every": 0, "sample_every": 0, "checkpoint_every": 10**9, "log_every": 10**9}

    def step_seconds(name: str, run) -> float:
        """Seconds per step of ``run``: a warm-up run first (CUDA context, cuDNN's choice of kernels for
        each new shape, worker start-up: measured on an H200, a first run paid them and the probe
        read 1.8x the VAE's real step time), then the difference of a short and a long run."""
        timed = {}
        for label, steps in (("warmup", short), ("short", short), ("long", long)):
            timed[label] = _seconds(device, functools.partial(run, work / f"{name}-{label}", steps))
        return (timed["long"] - timed["short"]) / (long - short)

    def vae_run(full_clips: bool, state: Path, steps: int) -> None:
        probe_config = dataclasses.replace(
            config, vae_steps=steps, vae_full_clip_steps=steps if full_clips else 0, **quiet
        )
        ts.train_vae(components.vae, probe_config, state, device, Budget(), progress=False)

    result: dict[str, Any] = {}
    for name, full in (("vae_crop", False), ("vae_full_clip", True)):
        result[f"{name}_step_s"] = step_seconds(name, functools.partial(vae_run, full))
    components.vae.requires_grad_(False)
    ts.set_latent_statistics(components.vae, dataclasses.replace(config, stats_clips=2), device)

    def cache_run(state: Path, steps: int) -> None:
        """``steps`` calls of the real cache builder: ``cache_batch`` clips each, rendered by the workers."""
        state.mkdir(parents=True, exist_ok=True)
        clips = dataclasses.replace(config, num_clips=steps * config.cache_batch)
        ts.build_latent_cache(components, clips, state / "latents.pt", device, progress=False)

    result["latent_clip_s"] = step_seconds("cache", cache_run) / config.cache_batch
    cache = torch.load(work / "cache-long" / "latents.pt", weights_only=False)

    def dit_run(batch: int, state: Path, steps: int) -> None:
        probe_config = dataclasses.replace(config, dit_batch=batch, dit_steps=steps, **quiet)
        ts.train_transformer(components, cache, probe_config, state, device, Budget(), progress=False)

    by_batch = {
        batch: step_seconds(f"dit-b{batch}", functools.partial(dit_run, batch))
        for batch in dict.fromkeys((config.dit_batch, *dit_batches))
    }
    result["dit_step_s"] = by_batch[config.dit_batch]
    result["dit_step_s_by_batch"] = by_batch
    return result


def size_recipe(
    config: ts.ShapesTrainConfig,
    timings: dict[str, float],
    seconds: float,
    vae_share: float,
    max_cache_share: float = 0.2,
) -> ts.ShapesTrainConfig:
    """``config`` with its step counts and cache size set so that the three stages take ``seconds``.

    The latent cache keeps the recipe's ``num_clips`` unless encoding them would take more than
    ``max_cache_share`` of the time; the VAE gets ``vae_share`` of what is left and keeps the recipe's
    fraction of whole-clip steps; the transformer gets the rest."""
    cache_clips = int(max_cache_share * seconds / timings["latent_clip_s"]) - config.stats_clips
    clips = min(config.num_clips, max(64, cache_clips))
    left = seconds - (clips + config.stats_clips) * timings["latent_clip_s"]
    full_fraction = config.vae_full_clip_steps / config.vae_steps if config.vae_steps else 0.0
    vae_step = (1 - full_fraction) * timings["vae_crop_step_s"] + full_fraction * timings[
        "vae_full_clip_step_s"
    ]
    vae_steps = max(1, int(vae_share * left / vae_step))
    dit_steps = max(1, int((1 - vae_share) * left / timings["dit_step_s"]))
    return dataclasses.replace(
        config,
        vae_steps=vae_steps,
        vae_full_clip_steps=int(round(full_fraction * vae_steps)),
        num_clips=clips,
        dit_steps=dit_steps,
    )


def _value(text: str) -> Any:
    """A number when ``text`` is one (YAML 1.1 reads ``6e-4`` as a string), else its YAML value."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["dit_batch=256", ...]`` -> ``{"dit_batch": 256}`` (numbers as numbers, else YAML values);
    unknown keys are refused by the recipe itself."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"gpu_toy_train: --set {item!r}: expected KEY=VALUE, e.g. --set dit_batch=256")
        overrides[key.strip()] = _value(value)
    return overrides


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", type=Path, default=RECIPE, help="the recipe whose sizes and batches train"
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/toy-shapes-gpu"), help="the run folder")
    parser.add_argument(
        "--minutes", type=float, default=9.0, help="the whole command's budget, probe included"
    )
    parser.add_argument(
        "--reserve", type=float, default=0.08, help="share of the budget kept for export and slack"
    )
    parser.add_argument(
        "--vae-share", type=float, default=0.45, help="share of the training time for the VAE"
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU test of this script)")
    parser.add_argument("--probe-steps", type=int, nargs=2, default=(5, 25), metavar=("SHORT", "LONG"))
    parser.add_argument(
        "--probe-dit-batches",
        type=int,
        nargs="*",
        default=(),
        help="other transformer batch sizes to time in the probe (how the step time grows with the batch)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe field (YAML value), e.g. --set dit_batch=256 --set dit_lr=6e-4",
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="where <tag>.{json,md} go (default benchmarks/results)"
    )
    parser.add_argument("--tag", default="gpu_toy_train")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.perf_counter()
    deadline = started + args.minutes * 60
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "gpu_toy_train: torch sees no CUDA device (use --device cpu --tiny to test the script)"
        )
    overrides = {**(TINY if args.tiny else {}), **parse_overrides(args.set)}
    recipe = ts.ShapesTrainConfig.from_yaml(args.config, **overrides)

    timings = probe(
        recipe,
        device,
        args.out.with_name(args.out.name + "-probe"),
        *args.probe_steps,
        dit_batches=tuple(args.probe_dit_batches),
    )
    probe_seconds = time.perf_counter() - started
    logger.info("probe (%.0f s): %s", probe_seconds, timings)
    train_seconds = (deadline - time.perf_counter() - STOP_MARGIN_S) * (1 - args.reserve)
    if train_seconds <= 0:
        raise SystemExit(
            f"gpu_toy_train: the probe took {probe_seconds:.0f} s, the whole budget; give more --minutes"
        )
    config = size_recipe(recipe, timings, train_seconds, args.vae_share)
    args.out.mkdir(parents=True, exist_ok=True)
    sized = {**yaml.safe_load(args.config.read_text()), **overrides}
    sized.update({name: getattr(config, name) for name in SIZED_FIELDS})
    (args.out / "sized_recipe.yaml").write_text(yaml.safe_dump(sized, sort_keys=False))
    logger.info("sized: %s", {name: getattr(config, name) for name in SIZED_FIELDS})

    # the hard stop: the deadline, less a few seconds to export whatever finished
    budget = Budget(seconds=max(1.0, deadline - time.perf_counter() - STOP_MARGIN_S))
    result = ts.train_shapes(args.out, config, device=str(device), budget=budget, progress=False)
    model_dir, snapshot = result.model_dir, False
    if not result.finished and (args.out / "state" / "dit.pt").exists():
        model_dir, snapshot = args.out / "model", True
        ts.export_snapshot(args.out, model_dir)
    total = time.perf_counter() - started
    summary = result.summary
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (cpu)"
    record = {
        "settings": {
            "recipe": str(args.config),
            "minutes": args.minutes,
            "reserve": args.reserve,
            "vae_share": args.vae_share,
            "probe_steps": list(args.probe_steps),
            "overrides": overrides,
            "tiny": args.tiny,
            "sized": {name: getattr(config, name) for name in SIZED_FIELDS},
        },
        "machine": {**machine_info(), "gpu": gpu, "device": str(device)},
        "probe": timings,
        "probe_seconds": probe_seconds,
        "stage_seconds": summary.get("seconds", {}),
        "total_seconds": total,
        "finished": result.finished,
        "snapshot": snapshot,
        "model_dir": str(model_dir) if model_dir else None,
        "final_vae_loss": summary.get("final_vae_loss"),
        "final_dit_loss": summary.get("final_dit_loss"),
        "vae_held_out_psnr_db": summary.get("held_out", {}).get("vae", []),
    }
    psnr = record["vae_held_out_psnr_db"]
    seconds = summary.get("seconds", {})
    lines = [
        f"# Toy model trained on one GPU in a time budget ({gpu})",
        "",
        f"`python benchmarks/gpu_toy_train.py --minutes {args.minutes:g}` (recipe {args.config.name}, "
        f"VAE share {args.vae_share:g}); steps sized by a {probe_seconds:.0f} s probe.",
        "",
        "| stage | probe s/step (or s/clip) | sized | seconds |",
        "|---|---|---|---|",
        f"| VAE (crops / whole clips) | {timings['vae_crop_step_s']:.4f} / "
        f"{timings['vae_full_clip_step_s']:.4f} | {config.vae_steps} steps "
        f"({config.vae_full_clip_steps} whole-clip) | {seconds.get('vae', math.nan):.0f} |",
        f"| latent cache | {timings['latent_clip_s']:.4f} | {config.num_clips} clips | "
        f"{seconds.get('latents', math.nan):.0f} |",
        f"| transformer | {timings['dit_step_s']:.4f} | {config.dit_steps} steps x batch "
        f"{config.dit_batch} | {seconds.get('dit', math.nan):.0f} |",
        "",
        "Transformer step time by batch (probe): "
        + ", ".join(f"{b}: {t:.4f} s" for b, t in sorted(timings["dit_step_s_by_batch"].items()))
        + ".",
        "",
        f"Whole command: {total:.0f} s ({total / 60:.1f} min); finished: {result.finished}"
        + (" (transformer exported as a snapshot)" if snapshot else "")
        + ".",
        f"VAE held-out whole-clip PSNR at its last evaluation: {psnr[-1][1]:.2f} dB (step {psnr[-1][0]:.0f})."
        if psnr
        else "VAE held-out PSNR: not evaluated.",
        "",
        "Quality of the model: `python benchmarks/toy_quality.py --model OUT/model` (any machine).",
    ]
    write_results(args.tag, record, lines, args.results or Path(__file__).resolve().parent / "results")
    print("\n".join(lines))
    return record


if __name__ == "__main__":
    main()
