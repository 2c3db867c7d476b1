"""GPU readiness check: speed and peak memory at the real model sizes, random weights, one command.

Measures, on one CUDA device, with random weights at the real configs (speed and memory do not
depend on the weight values):

1. **Wan2.2-TI2V-5B editing** at 480p x 81 frames (480x832) and 704x1280 x 121 frames, per
   offload mode (``none``, ``model``, ``group``: exactly the placement code of
   ``flowstudio.weights.load_components``), each phase of an edit on its own:
   prompt encoding (UMT5-XXL encoder), VAE encode, one transformer forward at 1, 2 and 4 batch
   rows (1: inversion without CFG; 2: one side with CFG; 4: FlowEdit's source + target with CFG),
   VAE decode. Each row records seconds (1 warm-up call, then ``--repeats`` timed calls between
   ``torch.cuda.synchronize()``) and the peak allocated / reserved GPU memory.
2. **Edit estimates** for the FlowEdit settings and the inversion baseline (DPM-Solver++
   inversion + UniPC regeneration): the number of transformer calls and their batch rows come
   from the edit code's own accounting (``flowstudio.edit.edit`` run on the tiny random
   checkpoint with the same settings reports ``model_calls`` / ``row_evaluations`` and the
   inversion / edit split), multiplied by the measured per-call seconds, plus the measured
   prompt, VAE encode and decode phases. That is an *estimate from per-call timing* (a full
   50-step edit at 121 frames takes far longer than this check may); the peak of an edit is the
   largest of its phases' measured peaks. Whether it fits 24 GiB is reported per mode, beside
   the analytical estimate of ``flowstudio.edit.memory.estimate_memory`` (whose coefficients no
   GPU had calibrated before: this is the calibration).
3. **DualForce MOVA-Lite streaming** (``flowstudio.avatar.model.config.mova_lite_config``): the
   streaming generator ``stream_latents`` with its KV cache, per-chunk seconds, first-chunk
   latency (sink commit included) and video frames per second, in bf16 and fp32. The VAE decode
   of the avatar's latents is not included (its codec is not part of the model).

Each measurement runs in its own ``try``: an out-of-memory error is recorded as ``OOM`` for that
row and the check goes on. ``--budget-minutes`` skips the remaining rows once time runs out.
Writes ``gpu_check.json`` (every number plus the settings, GPU name, torch / diffusers versions)
and ``gpu_check.md`` to ``--out`` (default ``benchmarks/results``, and only from a GPU).

``--tiny`` runs the same code paths on the CPU with the tiny test configs (the tiny random
checkpoint's widths, the toy DualForce config, small sizes): the end-to-end test of this script.
Its results go to a temporary folder unless ``--out`` names another one; never to
``benchmarks/results``.

    python benchmarks/gpu_check.py [--budget-minutes 7] [--repeats 2] [--modes model group none]
    python benchmarks/gpu_check.py --tiny --out /tmp/gpu_check_tiny

On the project's lent GPU machine, run ``benchmarks/gpu_check.sh`` (installs carried wheels
first); see ``docs/gpu.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowstudio import __version__

logger = logging.getLogger("gpu_check")

RESULTS = Path(__file__).resolve().parent / "results"
GIB = 1024**3
LIMIT_GIB = 24.0  # the project's goal: an edit on a 24 GB consumer GPU
OFFLOAD_MODES = ("model", "group", "none")  # the 24 GB candidates first: the budget may cut the rest
PROMPTS = ("a red bottle on a table", "a blue bottle on a table", "")  # source, target, negative

# The two methods whose cost the check estimates. FlowEdit: the paper's settings (Kulikov et al.
# 2024, SD3: T = 50, n_max = 33, source CFG 3.5, target CFG 13.5); every call is one batched
# 4-row forward. Inversion baseline: DPM-Solver++ inversion without CFG, UniPC regeneration with
# CFG 5, 50 steps as Wan2.2 samples. No preset is validated on a real model yet
# (flowstudio.edit.presets), so these are explicit settings, recorded in the results.
METHODS: dict[str, dict[str, Any]] = {
    "flowedit": {
        "method": "flowedit",
        "steps": 50,
        "source_guidance": 3.5,
        "target_guidance": 13.5,
        "flowedit": {"n_max": 33, "n_min": 0, "n_avg": 1},
    },
    "inversion": {"method": "inversion", "steps": 50, "source_guidance": 1.0, "target_guidance": 5.0},
}


@dataclass(frozen=True)
class Size:
    """One video size of the edit measurements."""

    label: str
    frames: int
    height: int
    width: int


@dataclass
class Scale:
    """Everything that differs between the real check (GPU) and the ``--tiny`` one (CPU)."""

    name: str
    device: torch.device
    dtype: torch.dtype
    vae_dtype: torch.dtype
    configs: dict[str, dict[str, Any]]
    sizes: list[Size]
    rows: tuple[int, ...]
    avatar_preset: str
    avatar_chunks: int
    avatar_dtypes: tuple[torch.dtype, ...]


@dataclass
class Row:
    """One measurement: a phase of an edit at one size and offload mode, or one avatar stream."""

    section: str
    phase: str
    size: str | None = None
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    offload: str | None = None
    batch_rows: int | None = None
    dtype: str | None = None
    status: str = "pending"  # ok | OOM | error | skipped (budget) | skipped (...)
    seconds: float | None = None  # mean of the timed calls
    seconds_min: float | None = None
    seconds_first: float | None = None  # the warm-up call (with offload: includes moving weights)
    peak_allocated_gib: float | None = None  # None on a CPU device (no allocator statistics)
    peak_reserved_gib: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Timing and memory
# ---------------------------------------------------------------------------------------------


class Clock:
    """Wall time since the start, and the budget guard."""

    def __init__(self, budget_minutes: float) -> None:
        self.start = time.perf_counter()
        self.budget = budget_minutes * 60.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def out_of_time(self) -> bool:
        return self.elapsed() > self.budget


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peaks(device: torch.device) -> tuple[float | None, float | None]:
    if device.type != "cuda":
        return None, None
    return torch.cuda.max_memory_allocated(device) / GIB, torch.cuda.max_memory_reserved(device) / GIB


def _free(device: torch.device, collect: bool = False) -> None:
    """Return cached device memory; ``collect``: first drop what a failed or finished stage left
    (an OOM's traceback keeps its tensors alive until the collector runs; ~0.3 s, so not per row)."""
    if collect:
        gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _is_oom(exc: BaseException) -> bool:
    # torch.cuda.OutOfMemoryError on CUDA; a host-side allocation failure says "out of memory" too.
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def measure(
    row: Row,
    clock: Clock,
    device: torch.device,
    call: Callable[[], Any],
    repeats: int,
) -> Any:
    """Fill ``row`` by timing ``call``: one warm-up call, then ``repeats`` timed ones.

    Returns the last call's output (``None`` when it failed or was skipped). Never raises: an
    out-of-memory error becomes ``status="OOM"``, anything else ``status="error"`` with its message.
    """
    if clock.out_of_time():
        row.status = "skipped (budget)"
        return None
    out = None
    try:
        _reset_peak(device)
        _sync(device)
        begin = time.perf_counter()
        out = call()
        _sync(device)
        row.seconds_first = time.perf_counter() - begin
        times = []
        for _ in range(repeats):
            out = None  # let the previous output go before the next call allocates its own
            begin = time.perf_counter()
            out = call()
            _sync(device)
            times.append(time.perf_counter() - begin)
        times = times or [row.seconds_first]
        row.seconds, row.seconds_min = float(np.mean(times)), float(min(times))
        row.peak_allocated_gib, row.peak_reserved_gib = _peaks(device)
        row.status = "ok"
    except Exception as exc:  # noqa: BLE001 - one failed row must not lose the others
        row.status = "OOM" if _is_oom(exc) else "error"
        row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        row.peak_allocated_gib, row.peak_reserved_gib = _peaks(device)
        logger.warning("%s %s %s %s: %s", row.section, row.phase, row.size, row.offload, row.error)
        out = None
        _free(device, collect=True)
    finally:
        _free(device)
    logger.info(
        "%-6s %-12s %-6s %-6s rows=%s %s: %s s, peak %s GiB (t=%.0f s)",
        row.section,
        row.phase,
        row.size or "",
        row.offload or "",
        row.batch_rows,
        row.status,
        _fmt(row.seconds, 3),
        _fmt(row.peak_allocated_gib, 2),
        clock.elapsed(),
    )
    return out


# ---------------------------------------------------------------------------------------------
# Random-weight models at a given config, built directly on the device
# ---------------------------------------------------------------------------------------------


def _clean(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def random_model(
    factory: Callable[[], torch.nn.Module], dtype: torch.dtype, device: torch.device
) -> torch.nn.Module:
    """Build ``factory()`` with random weights in ``dtype`` on ``device``, as ``from_pretrained`` would.

    Construction runs under ``torch.device(device)`` with ``dtype`` as the default dtype: the
    parameters are allocated and initialised on the device in their final dtype (seconds for the
    5B transformer on a GPU; building it in fp32 first would need 20 GB and minutes on a CPU).
    Modules the class keeps in fp32 (diffusers' ``_keep_in_fp32_modules``: Wan's time embedder,
    norms and modulation tables; transformers' ``_keep_in_fp32_modules_strict``, and its plain list
    for fp16 only) are then cast back, as ``from_pretrained(torch_dtype=...)`` leaves them;
    without it the measured memory and speed would not be the loaded model's.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), torch.no_grad():
            model = factory()
    finally:
        torch.set_default_dtype(previous)
    keep = set(getattr(model, "_keep_in_fp32_modules_strict", None) or [])
    if hasattr(model, "_keep_in_fp32_modules_strict"):
        # transformers: the plain list is upcast for fp16 only, the strict one for fp16 and bf16
        if dtype == torch.float16:
            keep |= set(getattr(model, "_keep_in_fp32_modules", None) or [])
    else:  # diffusers: kept in fp32 for any other dtype
        keep |= set(getattr(model, "_keep_in_fp32_modules", None) or [])
    if keep and dtype != torch.float32:
        for name, param in model.named_parameters():
            if any(k in name.split(".") for k in keep):
                param.data = param.data.float()
    return model.eval().requires_grad_(False)


def build_components(scale: Scale, offload: str, tiny_path: Path) -> Any:
    """Random-weight ``WanComponents`` at ``scale.configs``, placed by the loader's own code.

    The tokenizer is the tiny checkpoint's (the real UMT5 tokenizer is not shipped; it only maps
    text to ids, and prompts are padded to 512 tokens either way).
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    # The loader's placement function, private on purpose: this check must measure exactly what
    # load_components(offload=...) does, not a copy of it.
    from flowstudio.weights import WAN22_TI2V_5B_CONFIGS, WanComponents
    from flowstudio.weights.load import _apply_placement

    cfg = scale.configs
    te_keys = {"architectures", "torch_dtype", "transformers_version", "dtype"}
    te_config = UMT5Config(**{k: v for k, v in _clean(cfg["text_encoder"]).items() if k not in te_keys})
    import inspect

    vae_keys = set(inspect.signature(AutoencoderKLWan.__init__).parameters)
    vae_kwargs = {k: v for k, v in _clean(cfg["vae"]).items() if k in vae_keys}
    dev = scale.device
    transformer = random_model(lambda: WanTransformer3DModel(**_clean(cfg["transformer"])), scale.dtype, dev)
    vae = random_model(lambda: AutoencoderKLWan(**vae_kwargs), scale.vae_dtype, dev)
    text_encoder = random_model(lambda: UMT5EncoderModel(te_config), scale.dtype, dev)
    if offload != "none":
        # Offloaded weights rest on the host, as after from_pretrained; the hooks bring them over.
        for m in (transformer, vae, text_encoder):
            m.to("cpu")
        _free(dev)
    components = WanComponents(
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=AutoTokenizer.from_pretrained(tiny_path / "tokenizer", local_files_only=True),
        scheduler_config=dict(WAN22_TI2V_5B_CONFIGS["scheduler"]),
        model_index=dict(WAN22_TI2V_5B_CONFIGS["model_index"]),
        path=tiny_path,
        device=dev,
        dtype=scale.dtype,
    )
    _apply_placement(components, offload)  # type: ignore[arg-type]
    return components


# ---------------------------------------------------------------------------------------------
# 1. Edit phases
# ---------------------------------------------------------------------------------------------


def transformer_call(pipe: Any, size: Size, rows: int, text_dim: int) -> Callable[[], torch.Tensor]:
    """One batched transformer forward of ``rows`` rows at ``size``, as the editing denoiser makes it.

    TI2V form: per-token timesteps with latent frame 0 pinned (timestep 0), 512 text tokens.
    """
    from flowstudio.core.ti2v import first_frame_mask, per_token_timesteps

    dev = pipe.device
    shape = pipe.latent_shape(size.frames, size.height, size.width)
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn((rows, *shape[1:]), generator=g, device=dev)
    embeds = torch.randn((rows, pipe.max_sequence_length, text_dim), generator=g, device=dev)
    mask = first_frame_mask(tuple(shape), device=dev)
    timestep = per_token_timesteps(mask, 600.0, pipe.denoiser.patch_size, rows).contiguous()

    def call() -> torch.Tensor:
        with torch.no_grad():
            return pipe.denoiser.forward_rows(x, timestep, embeds, {})

    return call


def edit_rows(
    scale: Scale, offload: str, tiny_path: Path, clock: Clock, repeats: int, rows_out: list[Row]
) -> None:
    """All rows of one offload mode (every size), on one set of random components."""
    from flowstudio.pipeline import WanVideoPipeline

    def new_row(phase: str, size: Size, batch_rows: int | None = None) -> Row:
        row = Row(
            "edit",
            phase,
            size=size.label,
            frames=size.frames,
            height=size.height,
            width=size.width,
            offload=offload,
            batch_rows=batch_rows,
            dtype=str(scale.vae_dtype if phase.startswith("vae") else scale.dtype).removeprefix("torch."),
        )
        rows_out.append(row)
        return row

    plan = [(size, phase, r) for size in scale.sizes for phase, r in _phases(scale.rows)]
    if clock.out_of_time():
        for size, phase, r in plan:
            new_row(phase, size, r).status = "skipped (budget)"
        return
    begin = time.perf_counter()
    try:
        components = build_components(scale, offload, tiny_path)
        pipe = WanVideoPipeline(components, device=scale.device)
    except Exception as exc:  # noqa: BLE001 - e.g. offload="none" does not fit a small GPU
        status = "OOM" if _is_oom(exc) else "error"
        for size, phase, r in plan:
            row = new_row(phase, size, r)
            row.status, row.error = status, f"building the models: {type(exc).__name__}: {exc}"[:400]
        logger.warning("offload=%s: building the models failed: %s", offload, exc)
        _free(scale.device, collect=True)
        return
    logger.info("offload=%s: random models built and placed in %.1f s", offload, time.perf_counter() - begin)
    text_dim = int(scale.configs["transformer"]["text_dim"])
    rng = np.random.default_rng(0)
    count = iter(range(10**6))  # prompt encoding: a new prompt each call (the pipeline caches them)
    try:
        # Phases in the order flowstudio.edit.edit runs them (VAE encode, prompts, transformer,
        # decode): with offload="model" the hooks move a component only when the next one in their
        # chain runs, so what stays resident during a phase depends on that order.
        for size in scale.sizes:
            frames = rng.integers(0, 256, (size.frames, size.height, size.width, 3), dtype=np.uint8)
            latents = measure(
                new_row("vae_encode", size),
                clock,
                scale.device,
                lambda frames=frames: pipe.encode_video(frames),
                repeats,
            )
            measure(
                new_row("text_encode", size),
                clock,
                scale.device,
                lambda: pipe.encode_prompt(f"{PROMPTS[0]} {'a ' * next(count)}"),
                repeats,
            )
            for r in scale.rows:
                measure(
                    new_row("transformer", size, r),
                    clock,
                    scale.device,
                    transformer_call(pipe, size, r, text_dim),
                    repeats,
                )
            if latents is None:  # the encode failed or was skipped: decode a random latent instead
                shape = pipe.latent_shape(size.frames, size.height, size.width)
                latents = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(scale.device)
            measure(
                new_row("vae_decode", size),
                clock,
                scale.device,
                lambda latents=latents: pipe.decode_latents(latents),
                repeats,
            )
            latents = None
    finally:
        pipe = components = None  # drop the models before the next mode builds its own
        _free(scale.device, collect=True)


def _phases(rows: tuple[int, ...]) -> list[tuple[str, int | None]]:
    return [
        ("vae_encode", None),
        ("text_encode", None),
        *[("transformer", r) for r in rows],
        ("vae_decode", None),
    ]


# ---------------------------------------------------------------------------------------------
# 2. Call counts from the edit code, and the estimates
# ---------------------------------------------------------------------------------------------


def count_calls(tiny_path: Path) -> dict[str, dict[str, Any]]:
    """Transformer calls and batch rows of each method, from the edit code's own accounting.

    Runs ``flowstudio.edit.edit`` with each method's settings on the tiny random checkpoint (CPU,
    5 frames of 32x32: the counts depend on the settings only, not on the model or the size) and
    reads ``model_calls``, ``row_evaluations`` and the inversion / edit split it reports. The
    phases' rows per call follow from CFG (2 rows with guidance, 1 without; FlowEdit batches both
    sides); the split must add up to the reported ``model_calls``, or the count is refused.
    """
    from flowstudio.edit import edit
    from flowstudio.edit.flowedit import FlowEditConfig
    from flowstudio.pipeline import WanVideoPipeline

    pipe = WanVideoPipeline.from_pretrained(tiny_path, device="cpu")
    frames = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    counts: dict[str, dict[str, Any]] = {}
    for name, settings in METHODS.items():
        options = dict(settings)
        if "flowedit" in options:
            options["flowedit"] = FlowEditConfig(**options["flowedit"])
        result = edit(
            frames, source_prompt=PROMPTS[0], target_prompt=PROMPTS[1], model=pipe, size="native", **options
        )
        src_rows = 2 if settings["source_guidance"] != 1.0 else 1
        tgt_rows = 2 if settings["target_guidance"] != 1.0 else 1
        if settings["method"] == "flowedit":
            phases = [
                {"phase": "flowedit", "rows": src_rows + tgt_rows, "row_evaluations": result.row_evaluations}
            ]
        else:
            phases = [
                {
                    "phase": "invert",
                    "rows": src_rows,
                    "row_evaluations": result.info["inversion_row_evaluations"],
                },
                {
                    "phase": "regenerate",
                    "rows": tgt_rows,
                    "row_evaluations": result.info["edit_row_evaluations"],
                },
            ]
        for p in phases:
            p["calls"] = p["row_evaluations"] // p["rows"]
        if sum(p["calls"] for p in phases) != result.model_calls or any(
            p["calls"] * p["rows"] != p["row_evaluations"] for p in phases
        ):
            raise RuntimeError(
                f"{name}: call split {phases} does not add up to {result.model_calls} model calls"
            )
        counts[name] = {
            "settings": settings,
            "model_calls": result.model_calls,
            "row_evaluations": result.row_evaluations,
            "phases": phases,
            "prompts_encoded": 3,  # source, target and the negative prompt of CFG
        }
    return counts


def edit_estimates(scale: Scale, rows: list[Row], counts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Seconds and peak memory of whole edits, from the measured phases and the call counts."""
    from flowstudio.edit.memory import estimate_memory

    found = {(r.size, r.offload, r.phase, r.batch_rows): r for r in rows if r.section == "edit"}
    out = []
    for size in scale.sizes:
        for offload in OFFLOAD_MODES:
            if not any(k[0] == size.label and k[1] == offload for k in found):
                continue
            for method, c in counts.items():
                needed = {
                    "text_encode": found.get((size.label, offload, "text_encode", None)),
                    "vae_encode": found.get((size.label, offload, "vae_encode", None)),
                    "vae_decode": found.get((size.label, offload, "vae_decode", None)),
                    **{
                        f"transformer x{p['rows']}": found.get(
                            (size.label, offload, "transformer", p["rows"])
                        )
                        for p in c["phases"]
                    },
                }
                entry: dict[str, Any] = {"size": size.label, "offload": offload, "method": method}
                bad = {
                    k: (r.status if r else "not measured")
                    for k, r in needed.items()
                    if r is None or r.status != "ok"
                }
                max_rows = max(p["rows"] for p in c["phases"])
                try:
                    formula = estimate_memory(
                        height=size.height,
                        width=size.width,
                        frames=size.frames,
                        batch_rows=max_rows,
                        offload=offload,
                        dtype=str(scale.dtype).removeprefix("torch."),
                        vae_dtype=str(scale.vae_dtype).removeprefix("torch."),
                        transformer_config=scale.configs["transformer"],
                        vae_config=scale.configs["vae"],
                        text_encoder_config=scale.configs["text_encoder"],
                    )
                    entry["formula_peak_gib"] = round(formula.peak_bytes / GIB, 2)
                except Exception as exc:  # noqa: BLE001 - the formula is a comparison, not the result
                    entry["formula_peak_gib"] = None
                    entry["formula_error"] = str(exc)
                if bad:
                    oom = any(s == "OOM" for s in bad.values())
                    entry |= {"status": "OOM" if oom else "incomplete", "missing": bad}
                    if oom:
                        entry["fits_24gib"] = False
                    out.append(entry)
                    continue
                transformer_s = sum(
                    p["calls"] * needed[f"transformer x{p['rows']}"].seconds  # type: ignore[union-attr]
                    for p in c["phases"]
                )
                other_s = (
                    c["prompts_encoded"] * needed["text_encode"].seconds  # type: ignore[union-attr]
                    + needed["vae_encode"].seconds  # type: ignore[union-attr]
                    + needed["vae_decode"].seconds  # type: ignore[union-attr]
                )
                peaks = [r.peak_allocated_gib for r in needed.values() if r is not None]
                peak = max(peaks) if all(p is not None for p in peaks) else None
                entry |= {
                    "status": "ok",
                    "model_calls": c["model_calls"],
                    "row_evaluations": c["row_evaluations"],
                    "transformer_seconds": transformer_s,
                    "other_seconds": other_s,
                    "seconds_estimate": transformer_s + other_s,
                    "peak_allocated_gib": peak,
                    "peak_phase": None
                    if peak is None
                    else next(k for k, r in needed.items() if r is not None and r.peak_allocated_gib == peak),
                    "fits_24gib": None if peak is None else peak <= LIMIT_GIB,
                }
                out.append(entry)
    return out


# ---------------------------------------------------------------------------------------------
# 3. DualForce streaming
# ---------------------------------------------------------------------------------------------


def avatar_row(scale: Scale, dtype: torch.dtype, clock: Clock) -> Row:
    """Stream ``scale.avatar_chunks`` chunks of the DualForce preset with random weights.

    A short warm-up stream first (its first chunk is the cold-start latency: kernels, allocator),
    then the measured stream. Each chunk's time is taken when the generator yields it, after a
    device synchronize (the chunk's latents are then really computed: what a consumer decoding
    them would wait for).
    """
    from flowstudio.avatar.inference.streaming import stream_latents
    from flowstudio.avatar.model.config import preset
    from flowstudio.avatar.model.dualforce import DualForceModel

    config = preset(scale.avatar_preset)
    row = Row("avatar", "stream", dtype=str(dtype).removeprefix("torch."))
    row.extra = {"config": scale.avatar_preset, "chunks": scale.avatar_chunks}
    if clock.out_of_time():
        row.status = "skipped (budget)"
        return row
    dev = scale.device
    model = None
    try:
        _free(dev, collect=True)
        _reset_peak(dev)
        model = random_model(lambda: DualForceModel(config), dtype, dev)
        rates = model.rates
        h, w = config.latent_size
        g = torch.Generator(device=dev).manual_seed(0)
        reference = torch.randn(
            (1, config.video_input.latent_channels, 1, h, w), generator=g, device=dev, dtype=dtype
        )

        def run(chunks: int) -> tuple[float, list[float]]:
            audio = torch.randn(
                (rates.span(chunks - 1).audio[1], config.audio.feature_dim), generator=g, device=dev
            )
            _sync(dev)
            start = last = time.perf_counter()
            first, times = math.nan, []
            stream: Iterator[Any] = stream_latents(model, reference, audio, generator=g)
            for chunk in stream:
                _sync(dev)
                now = time.perf_counter()
                if math.isnan(first):
                    first = now - start  # sink commit + first chunk
                else:
                    times.append(now - last)
                last = now
                del chunk
            return first, times

        cold, _ = run(2)
        first, times = run(scale.avatar_chunks)
        span = rates.span(0)
        frames_per_chunk = span.video_frames[1] - span.video_frames[0]
        chunk_seconds = float(span.seconds[1] - span.seconds[0])
        steady = float(np.median(times)) if times else first
        row.seconds, row.seconds_first = steady, first
        row.seconds_min = float(min(times)) if times else first
        row.peak_allocated_gib, row.peak_reserved_gib = _peaks(dev)
        row.extra |= {
            "params": sum(p.numel() for p in model.parameters()),
            "first_chunk_seconds": first,
            "first_chunk_cold_seconds": cold,
            "chunk_seconds_median": steady,
            "video_frames_per_chunk": frames_per_chunk,
            "audio_seconds_per_chunk": chunk_seconds,
            "fps": frames_per_chunk / steady,
            "real_time_factor": chunk_seconds / steady,
            "steps_per_chunk": config.forcing.inference_steps,
            "window_chunks": config.forcing.window_chunks,
            "image_size": list(config.image_size),
        }
        row.status = "ok"
    except Exception as exc:  # noqa: BLE001 - one failed row must not lose the others
        row.status = "OOM" if _is_oom(exc) else "error"
        row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        logger.warning("avatar %s: %s", row.dtype, row.error)
    finally:
        model = None
        _free(dev, collect=True)
    logger.info(
        "avatar %s %s: %s fps, first chunk %s s (t=%.0f s)",
        row.dtype,
        row.status,
        _fmt(row.extra.get("fps"), 1),
        _fmt(row.extra.get("first_chunk_seconds"), 3),
        clock.elapsed(),
    )
    return row


# ---------------------------------------------------------------------------------------------
# Scales, report, main
# ---------------------------------------------------------------------------------------------


def real_scale(device: torch.device) -> Scale:
    from flowstudio.weights import WAN22_TI2V_5B_CONFIGS

    return Scale(
        name="real (Wan2.2-TI2V-5B, MOVA-Lite)",
        device=device,
        dtype=torch.bfloat16,
        vae_dtype=torch.float32,  # load_components' default: Wan's decoder is sensitive
        configs={k: WAN22_TI2V_5B_CONFIGS[k] for k in ("transformer", "vae", "text_encoder")},
        sizes=[Size("480p", 81, 480, 832), Size("720p", 121, 704, 1280)],
        rows=(1, 2, 4),
        avatar_preset="mova-lite",
        avatar_chunks=20,
        avatar_dtypes=(torch.bfloat16, torch.float32),
    )


def tiny_scale(tiny_path: Path) -> Scale:
    from flowstudio.edit.memory import model_configs

    return Scale(
        name="tiny (CPU smoke test: tiny random checkpoint, toy DualForce)",
        device=torch.device("cpu"),
        # the real run's dtypes, so that CI runs the bf16 path a GPU run takes (a bf16-only bug,
        # the denoiser feeding fp32 inputs to a bf16 transformer, was found this way)
        dtype=torch.bfloat16,
        vae_dtype=torch.float32,
        configs=model_configs(tiny_path),
        sizes=[Size("tiny-a", 5, 32, 32), Size("tiny-b", 9, 64, 64)],
        rows=(1, 2, 4),
        avatar_preset="toy",
        avatar_chunks=3,
        avatar_dtypes=(torch.bfloat16, torch.float32),
    )


def environment(device: torch.device) -> dict[str, Any]:
    import importlib.metadata as md

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    env: dict[str, Any] = {
        "device": str(device),
        "gpu": None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": version("diffusers"),
        "transformers": version("transformers"),
        "accelerate": version("accelerate"),
        "flowstudio": __version__,
        "machine": platform.machine(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {
            "gpu": torch.cuda.get_device_name(device),
            "gpu_memory_gib": round(props.total_memory / GIB, 1),
            "capability": list(torch.cuda.get_device_capability(device)),
        }
    return env


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def to_markdown(result: dict[str, Any]) -> str:
    env, settings = result["environment"], result["settings"]
    lines = [
        "# GPU readiness check",
        "",
        f"GPU: **{env['gpu'] or 'none (CPU: ' + settings['scale'] + ')'}**"
        + (f" ({env.get('gpu_memory_gib')} GiB)" if env["gpu"] else "")
        + f"; torch {env['torch']} (CUDA {env['cuda']}), diffusers {env['diffusers']}, "
        f"transformers {env['transformers']}, accelerate {env['accelerate']}, "
        f"flowstudio {env['flowstudio']}.",
        "",
        f"Random weights at the configs of: {settings['scale']}; transformer and text encoder "
        f"{settings['dtype']}, VAE {settings['vae_dtype']}; {settings['repeats']} timed calls after "
        f"1 warm-up per row; budget {settings['budget_minutes']} min, "
        f"wall {result['wall_seconds']:.0f} s. Peak = "
        + (
            "`torch.cuda.max_memory_allocated` over the phase, weights resident on the GPU included."
            if env["gpu"]
            else "not measured (CPU run: no allocator statistics)."
        ),
        "",
        "## Edit: whole-edit estimates (from per-call timing, not a timed full edit)",
        "",
        "Seconds = transformer calls x measured seconds per call (batch rows as the edit code counts "
        "them) + 3 prompt encodings + VAE encode + VAE decode. One-off weight moves between phases "
        "(offload) are in the warm-up calls, not here. Peak = the largest measured phase. "
        f"Formula = `flowstudio.edit.memory.estimate_memory`. Fits = peak <= {LIMIT_GIB:g} GiB.",
        "",
        "| size | offload | method | calls x rows | est. seconds | of which transformer | peak GiB (phase) | "
        f"formula GiB | fits {LIMIT_GIB:g} GiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in result["edit_estimates"]:
        calls = " + ".join(f"{p['calls']}x{p['rows']}" for p in result["call_counts"][e["method"]]["phases"])
        if e["status"] != "ok":
            missing = ", ".join(f"{k}: {v}" for k, v in e.get("missing", {}).items())
            fits = "no" if e.get("fits_24gib") is False else "?"
            lines.append(
                f"| {e['size']} | {e['offload']} | {e['method']} | {calls} | {e['status']} ({missing}) | | | "
                f"{_fmt(e.get('formula_peak_gib'), 1)} | {fits} |"
            )
            continue
        fits = "?" if e["fits_24gib"] is None else ("yes" if e["fits_24gib"] else "no")
        lines.append(
            f"| {e['size']} | {e['offload']} | {e['method']} | {calls} | {e['seconds_estimate']:.1f} | "
            f"{e['transformer_seconds']:.1f} | {_fmt(e['peak_allocated_gib'], 1)}"
            f"{'' if e['peak_phase'] is None else ' (' + e['peak_phase'] + ')'} | "
            f"{_fmt(e.get('formula_peak_gib'), 1)} | {fits} |"
        )
    lines += [
        "",
        "## Edit: measured phases",
        "",
        "| size | frames x H x W | offload | phase | rows | status | s (mean) | s (warm-up) | peak GiB "
        "| reserved GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if r["section"] != "edit":
            continue
        lines.append(
            f"| {r['size']} | {r['frames']}x{r['height']}x{r['width']} | {r['offload']} | {r['phase']} | "
            f"{r['batch_rows'] or ''} | {r['status']} | {_fmt(r['seconds'], 3)} | "
            f"{_fmt(r['seconds_first'], 3)} | "
            f"{_fmt(r['peak_allocated_gib'], 2)} | {_fmt(r['peak_reserved_gib'], 2)} |"
        )
    lines += [
        "",
        "## DualForce streaming (stream_latents, KV cache, random weights)",
        "",
        "Per chunk: the preset's denoising steps + the clean commit pass; chunk time taken after a device "
        "synchronize when the generator yields. First chunk includes committing the reference sink; "
        "cold = the first chunk of a fresh model (warm-up stream). VAE decode of the latents not included.",
        "",
        "| config | dtype | status | params | fps (video frames/s) | real-time factor | first chunk s "
        "| cold first chunk s | s/chunk | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if r["section"] != "avatar":
            continue
        x = r["extra"]
        params = f"{x['params'] / 1e9:.2f}B" if "params" in x else "-"
        lines.append(
            f"| {x['config']} | {r['dtype']} | {r['status']} | {params} | {_fmt(x.get('fps'), 1)} | "
            f"{_fmt(x.get('real_time_factor'), 2)} | {_fmt(x.get('first_chunk_seconds'), 3)} | "
            f"{_fmt(x.get('first_chunk_cold_seconds'), 3)} | {_fmt(x.get('chunk_seconds_median'), 3)} | "
            f"{_fmt(r['peak_allocated_gib'], 2)} |"
        )
    errors = [r for r in result["rows"] if r["error"]]
    if errors:
        lines += ["", "## Errors", ""]
        lines += [
            f"- {r['section']} {r['phase']} {r['size'] or ''} {r['offload'] or ''}: {r['error']}"
            for r in errors
        ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run with the tiny configs (CI)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default benchmarks/results; --tiny: a temp folder)",
    )
    parser.add_argument(
        "--budget-minutes", type=float, default=7.0, help="skip the remaining rows after this long"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed calls per row after the warm-up (default 2; --tiny 1)",
    )
    parser.add_argument(
        "--modes", nargs="+", choices=OFFLOAD_MODES, default=list(OFFLOAD_MODES), help="offload modes"
    )
    parser.add_argument("--sizes", nargs="+", default=None, help="labels of the sizes to run (480p 720p)")
    parser.add_argument("--no-avatar", action="store_true", help="skip the DualForce streaming rows")
    parser.add_argument("--device", default="cuda", help="CUDA device of the real check (default cuda)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("flowstudio").setLevel(logging.WARNING)
    clock = Clock(args.budget_minutes)
    out = (
        args.out
        if args.out is not None
        else (Path(tempfile.mkdtemp(prefix="gpu_check_tiny_")) if args.tiny else RESULTS)
    )
    device = torch.device("cpu") if args.tiny else torch.device(args.device)
    # Results in benchmarks/results must come from a GPU: a CPU run there would pass for one.
    if device.type != "cuda" and out.resolve() == RESULTS.resolve():
        sys.exit(f"gpu_check: --tiny / CPU results may not go to {RESULTS}; give --out another folder")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(
            "gpu_check: torch sees no CUDA device; run on a GPU machine, or --tiny for the CPU smoke run"
        )

    from flowstudio.models.factory import build_tiny_checkpoint

    work = Path(tempfile.mkdtemp(prefix="gpu_check_work_"))
    tiny_path = build_tiny_checkpoint(work / "tiny")  # tokenizer, tiny configs and the call counting
    scale = tiny_scale(tiny_path) if args.tiny else real_scale(device)
    if args.sizes:
        unknown = set(args.sizes) - {s.label for s in scale.sizes}
        if unknown:
            labels = [s.label for s in scale.sizes]
            sys.exit(f"gpu_check: unknown --sizes {sorted(unknown)}; choose from {labels}")
        scale.sizes = [s for s in scale.sizes if s.label in args.sizes]
    repeats = args.repeats if args.repeats is not None else (1 if args.tiny else 2)
    logger.info("gpu_check: %s on %s, budget %.1f min -> %s", scale.name, device, args.budget_minutes, out)

    counts = count_calls(tiny_path)
    logger.info(
        "call counts: %s (t=%.0f s)",
        {k: [(p["calls"], p["rows"]) for p in v["phases"]] for k, v in counts.items()},
        clock.elapsed(),
    )
    rows: list[Row] = []
    # the avatar first: a few seconds, and otherwise the slowest edit modes could starve it
    if not args.no_avatar:
        rows += [avatar_row(scale, dtype, clock) for dtype in scale.avatar_dtypes]
    for mode in [m for m in OFFLOAD_MODES if m in args.modes]:
        edit_rows(scale, mode, tiny_path, clock, repeats, rows)

    result = {
        "tool": "benchmarks/gpu_check.py",
        "environment": environment(device),
        "settings": {
            "scale": scale.name,
            "dtype": str(scale.dtype).removeprefix("torch."),
            "vae_dtype": str(scale.vae_dtype).removeprefix("torch."),
            "sizes": [asdict(s) for s in scale.sizes],
            "offload_modes": [m for m in OFFLOAD_MODES if m in args.modes],
            "batch_rows": list(scale.rows),
            "repeats": repeats,
            "warmup_calls": 1,
            "budget_minutes": args.budget_minutes,
            "limit_gib": LIMIT_GIB,
            "weights": "random (each class's default init; speed and memory do not depend on the values)",
            "text_tokens": 512,
            "configs": scale.configs,
            "avatar": {"preset": scale.avatar_preset, "chunks": scale.avatar_chunks},
            "methods": METHODS,
        },
        "call_counts": counts,
        "rows": [asdict(r) for r in rows],
        "edit_estimates": edit_estimates(scale, rows, counts),
        "wall_seconds": clock.elapsed(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "gpu_check.md").write_text(to_markdown(result), encoding="utf-8")
    logger.info("wrote %s and %s in %.0f s", out / "gpu_check.json", out / "gpu_check.md", clock.elapsed())
    return result


if __name__ == "__main__":
    main()
