"""Typer commands of the editing engine: ``flowstudio edit`` and ``flowstudio edit-memory``.

Thin shells over :func:`flowstudio.jobs.run` (an :class:`~flowstudio.jobs.EditRequest`) and
:func:`flowstudio.edit.memory.estimate_memory`;
``flowstudio/cli.py`` registers them (``app.command("edit")(edit_command)``,
``app.command("edit-memory")(estimate_memory_command)``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from flowstudio.checks import markup_safe
from flowstudio.errors import InputError
from flowstudio.jobs.errors import cli_errors

logger = logging.getLogger(__name__)
console = Console(stderr=True)
MODEL_ENV = "FLOWSTUDIO_MODEL"
#: the edit command's pixel-composite flags -> BlendConfig.composite_mask
COMPOSITE_OF_FLAG = {"--keep-unchanged": "change", "--keep-subject": "subject", "--swap-product": "swap"}


def _parse_box(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise InputError(f"--box must be four integers x0,y0,x1,y1 (pixels), got {text!r}")
    return values  # type: ignore[return-value]


def _parse_size(text: str) -> str | tuple[int, int]:
    """``model`` / ``native`` as they are; ``HxW`` (e.g. ``128x128``) as ``(height, width)``."""
    if text in ("model", "native"):
        return text
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts):
        return int(parts[0]), int(parts[1])
    raise InputError(f"--size must be model, native or HxW in pixels (e.g. 128x128), got {text!r}")


def _parse_blocks(text: str | None) -> tuple[int, ...] | str | None:
    """None (not given) -> None; ``"all"`` as is; ``"0,2,5"``, ``"0-3"`` or ``"-2,-1"`` -> indexes."""
    if text is None:
        return None
    if text.strip().lower() == "all":
        return "all"
    blocks: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part[0] + part[1:].split("-", 1)[0], part[1:].split("-", 1)[1]
                blocks.extend(range(int(lo), int(hi) + 1))
            else:
                blocks.append(int(part))
    except ValueError:
        raise InputError(
            f"blocks must be 'all', a list like 0,2,5 or a range like 0-3, got {text!r}"
        ) from None
    return tuple(blocks)


def edit_command(
    source: Path = typer.Argument(..., help="Source video (mp4/mov/webm/gif) or a folder of frames."),
    source_prompt: str | None = typer.Option(None, "--source-prompt", "-s", help="What the source shows."),
    target_prompt: str | None = typer.Option(
        None, "--target-prompt", "-t", help="What the edit should show."
    ),
    out: Path = typer.Option(
        Path("outputs/edit.mp4"), "--out", "-o", help="Edited mp4 (+ _side_by_side.mp4, .json)."
    ),
    model: Path | None = typer.Option(
        None, "--model", "-m", help=f"Local checkpoint folder (or ${MODEL_ENV})."
    ),
    method: str | None = typer.Option(None, "--method", help="inversion | flowedit | rf-solver | fireflow."),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="product-replace | background | style | color | material: only benchmark-validated ones "
        "run (none is on the shipped toy model; see docs/guide_edit.md). Otherwise pass explicit options.",
    ),
    mask: str | None = typer.Option(None, "--mask", help="Edit-region mask video/image, or 'auto'."),
    box: str | None = typer.Option(None, "--box", help="Edit region as pixels x0,y0,x1,y1."),
    target_image: Path | None = typer.Option(None, "--target-image", help="Target first frame (TI2V)."),
    first_frame: str | None = typer.Option(
        None, "--first-frame", help="Target first frame: source | image | none."
    ),
    steps: int | None = typer.Option(None, "--steps", help="Steps of the flow grid (default 30)."),
    shift: float | None = typer.Option(None, "--shift", help="Flow shift (default 5)."),
    source_guidance: float | None = typer.Option(None, "--source-guidance", help="Inversion / source CFG."),
    target_guidance: float | None = typer.Option(None, "--target-guidance", help="Generation / target CFG."),
    negative_prompt: str | None = typer.Option(None, "--negative-prompt", help="CFG negative prompt."),
    inversion_solver: str | None = typer.Option(
        None, "--inversion-solver", help="Override the inversion solver."
    ),
    generation_solver: str | None = typer.Option(
        None, "--generation-solver", help="Override the generation solver."
    ),
    n_max: int | None = typer.Option(None, "--n-max", help="FlowEdit: steps the edit runs over."),
    n_min: int | None = typer.Option(None, "--n-min", help="FlowEdit: final steps of regular sampling."),
    n_avg: int | None = typer.Option(None, "--n-avg", help="FlowEdit: noise draws per step."),
    inject: float | None = typer.Option(
        None, "--inject", help="Feature injection strength 0..1 (off if unset)."
    ),
    inject_blocks: str | None = typer.Option(None, "--inject-blocks", help="Blocks: all, 0,2,5 or 0-3."),
    inject_end: float | None = typer.Option(
        None, "--inject-end", help="Injection step window end (fraction)."
    ),
    share_kv: str | None = typer.Option(None, "--share-kv", help="Attention K/V sharing: replace | concat."),
    share_blocks: str | None = typer.Option(None, "--share-blocks", help="Blocks: all, 0,2,5 or 0-3."),
    share_end: float | None = typer.Option(
        None, "--share-end", help="K/V sharing step window end (fraction)."
    ),
    blend: float | None = typer.Option(None, "--blend", help="Masked blending strength 0..1 (needs a mask)."),
    feather: int | None = typer.Option(None, "--feather", help="Mask feather, latent cells."),
    pixel_composite: bool | None = typer.Option(
        None, "--pixel-composite/--no-pixel-composite", help="Paste source pixels back outside the mask."
    ),
    keep_unchanged: bool = typer.Option(
        False,
        "--keep-unchanged",
        help="Paste source pixels back wherever the edit did not change them (change-mask composite; "
        "no mask needed, no latent blending).",
    ),
    change_threshold: float | None = typer.Option(
        None, "--change-threshold", help="With --keep-unchanged: colour difference 0..1 that counts (0.2)."
    ),
    change_largest: bool | None = typer.Option(
        None,
        "--change-largest/--change-all",
        help="With --keep-unchanged: keep only the largest changed region of each frame (scattered "
        "blotches go back to the source), or every changed pixel.",
    ),
    change_refine: str | None = typer.Option(
        None,
        "--change-refine",
        help="With --keep-unchanged: snap the changed region to the frames' edges with GrabCut: none, "
        "source (edits that keep the silhouette: colour, background) or both (a new silhouette too).",
    ),
    keep_subject: bool = typer.Option(
        False,
        "--keep-subject",
        help="Background edits: paste the source's subject back (GrabCut separates it from the frame's "
        "border in each frame; the product must not touch the edges) and keep the edit everywhere else. "
        "No mask needed, no latent blending.",
    ),
    subject_confirm: int | None = typer.Option(
        None,
        "--subject-confirm",
        help="With --keep-subject: keep the source's subject only within N pixels of the subject the same "
        "cut finds in the edited frame (0: off); the background preset uses 4, so that a busy backdrop the "
        "source's cut took along with the product goes to the edit.",
    ),
    swap_product: bool = typer.Option(
        False,
        "--swap-product",
        help="Product swaps: paste the edit's new product (GrabCut where the edit changed) onto the "
        "source's own scene with the old product painted out, so the backdrop stays the source's. No mask "
        "needed, no latent blending.",
    ),
    swap_cut: str | None = typer.Option(
        None,
        "--swap-cut",
        help="With --swap-product: how the new product is cut out of the edit: change (default; GrabCut "
        "where the edit changed, for FlowEdit) or subject (the edit's own subject, cut from the frame's "
        "border: for --method inversion / fireflow, which redraw every pixel) or change-or-subject (the "
        "first, the second in frames where it finds nothing).",
    ),
    swap_backdrop_tolerance: float | None = typer.Option(
        None,
        "--swap-backdrop-tolerance",
        help="With --swap-product: drop the pixels of the new product's cut whose colour is within this "
        "(0..1) of the edit's backdrop around it, so that a ring's hole shows the scene (0.12; 0: off).",
    ),
    swap_plate_check: float | None = typer.Option(
        None,
        "--swap-plate-check",
        help="With --swap-product: paint out the old product as found from the border's colours in frames "
        "where its GrabCut cut is more than this many times larger (tiles taken along; 1.6; 0: off).",
    ),
    strength: float | None = typer.Option(
        None, "--strength", help="Edit strength = starting noise level 0..1."
    ),
    renoise: bool = typer.Option(
        False, "--renoise", help="With --strength: fresh noise (SDEdit), no inversion."
    ),
    source_features: str | None = typer.Option(None, "--source-features", help="auto | cache | recompute."),
    memory_budget: float | None = typer.Option(None, "--memory-budget", help="Feature-cache budget in GB."),
    max_batch_rows: int | None = typer.Option(
        None, "--max-batch-rows", help="Split model calls (less memory)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    fps: float | None = typer.Option(None, "--fps", help="Output frame rate (default: the source's)."),
    frame_policy: str = typer.Option("trim", "--frame-policy", help="To 4k+1 frames: trim | pad | resample."),
    size_policy: str = typer.Option(
        "resize", "--size-policy", help="To the working size: resize (stretch) | crop | pad."
    ),
    size: str = typer.Option(
        "model",
        "--size",
        help="Working size: model (default: the size the model was trained at, e.g. 128x128 for the "
        "toy model, when its folder records one), native (the source's size, rounded to multiples "
        "of 32) or HxW.",
    ),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu, cuda."),
    dtype: str | None = typer.Option(None, "--dtype", help="float32 / bfloat16 / float16."),
    vae_dtype: str | None = typer.Option(
        None,
        "--vae-dtype",
        help="The VAE's dtype (default float32); bfloat16 runs it 3-4x as fast on a CPU with bf16 "
        "arithmetic (avx512_bf16 / amx_bf16 in lscpu).",
    ),
    offload: str = typer.Option("none", "--offload", help="none | model | group."),
) -> None:
    """Edit SOURCE from a text instruction (training-free).

    Writes the edited mp4, a side-by-side mp4 and a JSON record. A thin parser over
    :func:`flowstudio.jobs.run` with an :class:`~flowstudio.jobs.EditRequest`: options left out come
    from the preset, else the defaults (merged in :mod:`flowstudio.jobs.merge`).
    """
    from flowstudio.jobs import EditRequest, run
    from flowstudio.jobs.progress import console_progress

    with cli_errors():
        if source_prompt is None or not source_prompt.strip():
            raise InputError("--source-prompt is missing: describe what the source video shows")
        if target_prompt is None or not target_prompt.strip():
            raise InputError("--target-prompt is missing: describe what the edited video should show")
        given = {
            "--keep-unchanged": keep_unchanged,
            "--keep-subject": keep_subject,
            "--swap-product": swap_product,
        }
        chosen = [flag for flag in COMPOSITE_OF_FLAG if given[flag]]
        if len(chosen) > 1:
            raise InputError(
                f"{' and '.join(chosen)} are pixel composites: give one (--keep-subject for a background "
                "edit that keeps the product, --swap-product for a new product in the same scene)"
            )
        _needs(
            "--swap-cut",
            swap_cut,
            "--swap-product",
            swap_product,
            "chooses how --swap-product cuts the new product",
        )
        _needs(
            "--swap-backdrop-tolerance",
            swap_backdrop_tolerance,
            "--swap-product",
            swap_product,
            "sets how --swap-product trims its cut",
        )
        _needs(
            "--swap-plate-check",
            swap_plate_check,
            "--swap-product",
            swap_product,
            "checks what --swap-product paints out",
        )
        _needs(
            "--subject-confirm",
            subject_confirm,
            "--keep-subject",
            keep_subject,
            "checks --keep-subject's cut against the edited frame",
        )
        if chosen:  # a pixel composite without latent blending
            change_options = (
                {
                    "change_threshold": change_threshold,
                    "change_largest": change_largest,
                    "change_refine": change_refine,
                }
                if keep_unchanged
                else {}
            )
            blend_request = {
                "strength": 0.0 if blend is None else blend,
                "pixel_composite": True,
                "composite_mask": COMPOSITE_OF_FLAG[chosen[0]],
                **(
                    _given(
                        feather=feather,
                        swap_cut=swap_cut,
                        swap_backdrop_tolerance=swap_backdrop_tolerance,
                        swap_plate_check=swap_plate_check,
                        subject_confirm_grow=subject_confirm,
                        **change_options,
                    )
                    or {}
                ),
            }
        else:
            blend_request = _given(strength=blend, feather=feather, pixel_composite=pixel_composite)
        request = EditRequest(
            source=source,
            source_prompt=source_prompt,
            target_prompt=target_prompt,
            out=out,
            model=model,
            preset=preset,
            method=method,
            steps=steps,
            shift=shift,
            source_guidance=source_guidance,
            target_guidance=target_guidance,
            negative_prompt=negative_prompt,
            inversion_solver=inversion_solver,
            generation_solver=generation_solver,
            first_frame=first_frame,
            flowedit=_given(n_max=n_max, n_min=n_min, n_avg=n_avg),
            injection=_given(strength=inject, blocks=_parse_blocks(inject_blocks), end=inject_end),
            attention_share=_given(mode=share_kv, blocks=_parse_blocks(share_blocks), end=share_end),
            blend=blend_request,
            reschedule=_given(strength=strength, mode="noise" if renoise else None),
            source_features=source_features,
            memory_budget_gb=memory_budget,
            max_batch_rows=max_batch_rows,
            seed=seed,
            mask=mask,
            box=_parse_box(box),
            target_image=target_image,
            fps=fps,
            frame_policy=frame_policy,
            size_policy=size_policy,
            size=_parse_size(size),
            device=device,
            dtype=dtype,
            vae_dtype=vae_dtype,
            offload=offload,
        )
        with console_progress() as progress:
            result = run(request, progress=progress)
    s = result.engine.settings
    written = ", ".join(markup_safe(result.files[k]) for k in ("video", "side_by_side", "record"))
    console.print(
        f"wrote {written} "
        f"({s.method}, {s.steps} steps, {result.model_calls} model calls, {result.timings['run']:.1f} s)"
    )


def _needs(option: str, value: Any, flag: str, flag_given: bool, what: str) -> None:
    """Refuse ``option`` (given: ``value`` is not None) without the composite ``flag`` it tunes."""
    if value is not None and not flag_given:
        raise InputError(f"{option} {what}: give {flag} too")


def _given(**fields: Any) -> dict[str, Any] | None:
    """The options of one control that were given (``None``: none was, the control is left alone)."""
    given = {k: v for k, v in fields.items() if v is not None}
    return given or None


def _read_configs(model: Path) -> dict[str, dict]:
    configs = {}
    for name in ("transformer", "vae", "text_encoder"):
        file = model / name / "config.json"
        if not file.is_file():
            raise InputError(f"{file}: not found; --model must be a diffusers-format Wan2.2 TI2V folder")
        configs[name] = json.loads(file.read_text(encoding="utf-8"))
    return configs


def estimate_memory_command(
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Checkpoint folder whose configs to read (default: Wan2.2-TI2V-5B configs).",
    ),
    height: int = typer.Option(704, "--height", help="Video height (multiple of 32)."),
    width: int = typer.Option(1280, "--width", help="Video width (multiple of 32)."),
    frames: int = typer.Option(121, "--frames", help="Frames (4k+1)."),
    rows: list[int] = typer.Option([1, 2, 4], "--rows", help="Batch rows per model call (repeatable)."),
    offload: list[str] = typer.Option(
        ["none", "model", "group"], "--offload", help="Offload modes (repeatable)."
    ),
    dtype: str = typer.Option("bfloat16", "--dtype", help="Transformer / text encoder dtype."),
    limit_gb: float = typer.Option(24.0, "--limit-gb", help="Memory to fit, GiB."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the estimates as JSON."),
) -> None:
    """Estimate peak GPU memory of an edit (meta-device parameter count + activation estimate)."""
    from flowstudio.edit.memory import estimate_memory, format_estimates

    with cli_errors():
        configs = _read_configs(model) if model is not None else {}
        estimates = [
            estimate_memory(
                height=height,
                width=width,
                frames=frames,
                batch_rows=r,
                offload=o,
                dtype=dtype,
                transformer_config=configs.get("transformer"),
                vae_config=configs.get("vae"),
                text_encoder_config=configs.get("text_encoder"),
            )
            for o in offload
            for r in rows
        ]
    first = estimates[0]
    typer.echo(
        f"model: {model or 'Wan2.2-TI2V-5B reference config'}; {frames} frames {height}x{width} "
        f"({first.tokens} tokens); params: "
        + ", ".join(f"{k} {v / 1e9:.2f} B" for k, v in first.params.items())
    )
    typer.echo(format_estimates(estimates, limit_gb))
    fitting = [e for e in estimates if e.fits(limit_gb)]
    best = min(
        fitting, key=lambda e: (["none", "model", "group"].index(e.offload), -e.batch_rows), default=None
    )
    typer.echo(
        f"fits {limit_gb:g} GiB: "
        + (
            f"yes, e.g. --offload {best.offload} with {best.batch_rows} batch rows"
            if best
            else "no configuration"
        )
        + " (analytical estimate, not a measurement)"
    )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps([e.to_dict() for e in estimates], indent=2) + "\n", encoding="utf-8")
