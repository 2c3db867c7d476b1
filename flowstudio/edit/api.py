"""``flowstudio.edit.edit(...)``: edit a video from a text instruction, training-free.

Top to bottom, as a pipeline reads::

    1. settings      preset + explicit options -> EditSettings (validated)
    2. inputs        read + normalise the source (4k+1 frames, multiple-of-32 size), target image, mask
    3. encode        source latent, source/target conditioning (prompts cached)
    4. controls      feature injection / K/V sharing (cache or recompute), blending mask, reschedule
    5. method        inversion editor (baseline, RF-Solver, FireFlow) or FlowEdit, on the one loop
    6. decode        edited frames; optional mp4 + side-by-side mp4 + settings JSON
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowstudio import __version__
from flowstudio.checks import DTYPES, check_device, check_number, check_outputs, dtype_name, parse_dtype
from flowstudio.core.flow import flow_sigmas
from flowstudio.core.solvers import make_solver
from flowstudio.core.stochastic import student_grid
from flowstudio.core.ti2v import first_frame_mask
from flowstudio.denoiser import Conditioning
from flowstudio.edit.attention_share import AttentionShare
from flowstudio.edit.blending import (
    BlendConfig,
    composite,
    pixel_composite,
    pixel_mask_from_latent,
)
from flowstudio.edit.context import EditContext, FeatureStore
from flowstudio.edit.controls import SourceFeatureControl, choose_source_mode, feature_bytes_per_step
from flowstudio.edit.flowedit import run_flowedit
from flowstudio.edit.injection import FeatureInjection
from flowstudio.edit.inversion import METHOD_SOLVERS, run_inversion_edit
from flowstudio.edit.job import EditJob
from flowstudio.edit.masks import (
    auto_mask,
    check_mask,
    feather_mask,
    latent_mask,
    load_mask,
    mask_from_box,
    to_pixel_mask,
)
from flowstudio.edit.paired import EditDenoiser
from flowstudio.edit.reschedule import reschedule_sigmas
from flowstudio.edit.settings import EditSettings, student_edit_defaults
from flowstudio.errors import InputError
from flowstudio.jobs.progress import ProgressController
from flowstudio.pipeline import WanVideoPipeline
from flowstudio.video import NormalizeReport, VideoClip, normalize_clip, read_image, read_video

logger = logging.getLogger(__name__)

MaskInput = str | os.PathLike | np.ndarray | None


@dataclass
class EditResult:
    """What :func:`edit` returns.

    Attributes:
        frames: edited video, uint8 ``(T, H, W, 3)``.
        source_frames: the normalised source it was made from, uint8 ``(T, H, W, 3)``.
        latents: edited latent ``(1, C, T', H', W')``.
        settings: the settings used.
        mask: latent edit mask ``(1, 1, T', H', W')`` used for blending, or ``None``.
        model_calls: transformer forwards (each may batch several rows).
        row_evaluations: rows evaluated (one CFG branch of one side at one point: the compute spent).
        seconds: wall time of steps 3-6.
        fps: frame rate of the written videos.
        outputs: paths written (``video``, ``side_by_side``, ``settings``), empty without ``out``.
        info: everything else worth recording (source-feature mode, normalisation, per-phase calls).
    """

    frames: np.ndarray
    source_frames: np.ndarray
    latents: torch.Tensor
    settings: EditSettings
    mask: torch.Tensor | None
    model_calls: int
    row_evaluations: int
    seconds: float
    fps: float
    outputs: dict[str, Path] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def side_by_side(self) -> np.ndarray:
        """Source left, edit right: uint8 ``(T, H, 2W, 3)``."""
        return np.concatenate([self.source_frames, self.frames], axis=2)

    def record(self) -> dict[str, Any]:
        """JSON-ready record of the settings and what the run cost."""
        return {
            "settings": self.settings.to_dict(),
            "model_calls": self.model_calls,
            "row_evaluations": self.row_evaluations,
            "seconds": round(self.seconds, 3),
            "fps": self.fps,
            "flowstudio": __version__,
            **self.info,
        }


def resolve_settings(
    *,
    source_prompt: str | None,
    target_prompt: str | None,
    preset: str | None = None,
    settings: EditSettings | None = None,
    **overrides: Any,
) -> EditSettings:
    """``settings``, then the preset's values, then explicit ``overrides`` (``None`` values are ignored).

    The merge itself (and the preset's FlowEdit window rescaled to the steps) lives in
    :func:`flowstudio.jobs.merge.merge_edit_settings`, the one place presets and overrides meet.
    """
    from flowstudio.jobs.merge import merge_edit_settings

    return merge_edit_settings(
        source_prompt=source_prompt,
        target_prompt=target_prompt,
        preset=preset,
        settings=settings,
        **overrides,
    )


def _load_pipeline(
    model: Any, device: str | torch.device, dtype: torch.dtype | None, offload: str
) -> WanVideoPipeline:

    if isinstance(model, WanVideoPipeline):
        return model
    if model is None:
        raise InputError(
            "model is missing: pass model=PATH (a local diffusers-format Wan2.2 TI2V folder) or a "
            "WanVideoPipeline; for a quick try, build a tiny random one with `flowstudio models make-tiny`"
        )
    return WanVideoPipeline.from_pretrained(model, device=device, dtype=dtype, offload=offload)


def _student_settings(model: Any) -> dict | None:
    """The ``distill.json`` of a student model (a folder path, or a pipeline loaded from one)."""
    from flowstudio.distill.export import student_settings

    folder = getattr(model.components, "path", None) if isinstance(model, WanVideoPipeline) else model
    if isinstance(folder, (str, os.PathLike)) and Path(folder).is_dir():
        return student_settings(Path(folder))
    return None


def _read_source(source: Any, fps: float | None) -> tuple[np.ndarray, float, str]:
    if isinstance(source, VideoClip):
        return source.frames, fps or source.fps, str(source.path) if source.path else "<clip>"
    if isinstance(source, np.ndarray):
        if source.ndim != 4 or source.shape[-1] != 3 or source.dtype != np.uint8:
            raise InputError(f"source array must be uint8 (T, H, W, 3), got {source.dtype} {source.shape}")
        return source, fps or 16.0, "<array>"
    if source is None:
        raise InputError("source is missing: give a video file, an image folder or uint8 (T, H, W, 3) frames")
    clip = read_video(source)
    return clip.frames, fps or clip.fps, str(source)


def _normalise_mask(mask: np.ndarray, report: NormalizeReport) -> np.ndarray:
    """Apply the source's normalisation to a mask given at the source file's original size."""
    t0, h0, w0 = report.original_shape
    t1, h1, w1 = report.shape
    if mask.shape[1:] == (h1, w1) or mask.shape[1:] != (h0, w0) or not report.changed:
        return mask
    if mask.shape[0] == t0 and report.frames_changed:
        mask = mask[np.asarray(report.frame_indices)]
    as_video = (mask * 255).astype(np.uint8)
    resized, _ = normalize_clip(
        as_video,
        frame_policy="trim",
        size_policy=report.size_policy,  # type: ignore[arg-type]
        target_size=(h1, w1),
        target_frames=None,
        pad_mode="constant" if report.size_policy == "pad" else "edge",
    )
    return (resized > 127).astype(np.float32)


def _target_image(image: Any, height: int, width: int) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise InputError(f"target_image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        if image.shape[:2] != (height, width):
            import cv2

            logger.warning("target image %s resized to the video size %dx%d", image.shape[:2], height, width)
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        return image
    return read_image(image, size=(height, width))


def _conditioning(
    pipe: Any,
    prompt: str,
    negative: str,
    guidance: float,
    first_frame: torch.Tensor | None,
    shape: tuple[int, ...],
) -> Conditioning:
    return Conditioning(
        prompt_embeds=pipe.encode_prompt(prompt),
        negative_embeds=pipe.encode_prompt(negative) if guidance != 1.0 else None,
        guidance_scale=guidance,
        first_frame=first_frame,
        mask=None if first_frame is None else first_frame_mask(shape, device=first_frame.device),
    )


def _feature_controls(
    s: EditSettings, pipe: Any, context: EditContext, shape: tuple[int, ...], num_steps: int
) -> tuple[list[SourceFeatureControl], dict[str, Any]]:
    """Build injection / K/V sharing controls and choose cache or recompute by the memory budget."""
    wanted = []
    if s.injection is not None and s.injection.strength > 0.0:
        wanted.append(("injection", s.injection, 1))
    if s.attention_share is not None:
        wanted.append(("attention_share", s.attention_share, 2))
    if not wanted:
        return [], {"source_features": "none"}
    config = pipe.components.transformer.config
    p_t, p_h, p_w = config.patch_size
    tokens = (shape[2] // p_t) * (shape[3] // p_h) * (shape[4] // p_w)
    dim = config.num_attention_heads * config.attention_head_dim
    dtype_bytes = torch.finfo(pipe.denoiser.dtype).bits // 8
    rows = 2 if s.source_guidance != 1.0 else 1
    cache_bytes = 0
    for _, c, tensors in wanted:
        blocks = config.num_layers if c.blocks is None else len(set(c.blocks))
        window_steps = math.ceil((c.end - c.start) * num_steps) + 2
        cache_bytes += window_steps * feature_bytes_per_step(
            tokens=tokens,
            dim=dim,
            blocks=blocks,
            rows=rows,
            tensors_per_block=tensors,
            bytes_per_value=dtype_bytes,
        )
    if s.method == "flowedit" or s.reschedule.mode == "noise":
        mode = "recompute"  # the source is evaluated beside the target anyway / there is no inversion pass
    else:
        mode = choose_source_mode(s.source_features, cache_bytes, s.memory_budget_gb * 1e9)
    store = FeatureStore("cpu" if s.cache_on_cpu else None) if mode == "cache" else None
    controls: list[SourceFeatureControl] = []
    for name, c, _ in wanted:
        cls = FeatureInjection if name == "injection" else AttentionShare
        controls.append(cls(c, context, store))  # type: ignore[arg-type]
    return controls, {"source_features": mode, "feature_cache_estimate_bytes": cache_bytes}


def _composite_only(blend: BlendConfig) -> bool:
    """A change-mask, subject or swap composite without latent blending: it needs no blending mask (nor
    its model call)."""
    return blend.composite_mask in ("change", "subject", "swap") and blend.strength == 0


def depends_on_seed(settings: EditSettings, mask: MaskInput = None, box: Any = None) -> bool:
    """Whether :func:`edit` with these settings and this ``mask`` / ``box`` draws random numbers, so
    that its ``seed`` can change the result.

    Three things draw from the seed's generator: FlowEdit's fresh noise at every step, the SDEdit start
    (``reschedule.mode == "noise"``), and the automatic blending mask (it noises the source before its
    probe call; used when blending is on, by ``blend`` or ``mask="auto"``, and neither a mask nor a box
    is given, unless the blend is only a change-mask composite). Everything else (the inversion
    editors, K/V sharing, feature injection, blending with a given mask, pixel composites) is
    deterministic: two seeds give the same edit bit for bit. Errs on the safe side (FlowEdit with
    ``n_max=0`` draws nothing but counts as seed-dependent).
    """
    region = box is not None or (mask is not None and not (isinstance(mask, str) and mask == "auto"))
    blend = settings.blend
    if blend is None and (mask is not None or box is not None):
        blend = BlendConfig()  # as edit() does: a mask or box turns blending on with its defaults
    auto_mask_used = blend is not None and not _composite_only(blend) and not region
    sdedit = settings.reschedule.mode == "noise" and settings.reschedule.strength > 0
    return settings.method == "flowedit" or sdedit or auto_mask_used


def _mask_description(mask: MaskInput, box: Any) -> str | None:
    if box is not None:
        return f"box {tuple(int(v) for v in box)}"
    if isinstance(mask, np.ndarray):
        return f"array {mask.shape}"
    return None if mask is None else str(mask)


@torch.no_grad()
def edit(
    source: str | os.PathLike | np.ndarray | VideoClip,
    *,
    source_prompt: str | None = None,
    target_prompt: str | None = None,
    model: Any = None,
    preset: str | None = None,
    settings: EditSettings | None = None,
    mask: MaskInput = None,
    box: tuple[int, int, int, int] | None = None,
    target_image: str | os.PathLike | np.ndarray | None = None,
    out: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    offload: str = "none",
    fps: float | None = None,
    frame_policy: str = "trim",
    size_policy: str = "resize",
    size: str | tuple[int, int] = "model",
    progress: bool | Callable[[int, int, str], None] = False,
    **options: Any,
) -> EditResult:
    """Edit ``source`` so that it shows ``target_prompt`` instead of ``source_prompt``.

    Args:
        source: video file, image folder, :class:`~flowstudio.video.VideoClip` or uint8 ``(T, H, W, 3)``.
        source_prompt, target_prompt: required texts.
        model: local checkpoint folder or a loaded :class:`~flowstudio.pipeline.WanVideoPipeline`.
        preset: ``product-replace``, ``background``, ``style``, ``color``, ``material``: only those a
            benchmark run validated (:mod:`flowstudio.edit.presets`; none is on the shipped toy model,
            and an unvalidated one raises :class:`InputError` asking for explicit options).
        settings: a full :class:`EditSettings` to start from (the preset and ``options`` override it).
        mask: edit region for blending: ``"auto"``, a mask video/image path, or an array
            ``(H, W)`` / ``(T, H, W)`` (nonzero = edit); at the normalised size or the source's.
        box: edit region as a pixel box ``(x0, y0, x1, y1)`` (instead of ``mask``).
        target_image: the target first frame (implies ``first_frame="image"``).
        out: ``.mp4`` to write; also writes ``<stem>_side_by_side.mp4`` and ``<stem>.json``.
        device, dtype, offload: where and how the model runs (ignored with a loaded pipeline).
        fps: frame rate of the outputs (default: the source's).
        frame_policy, size_policy: how the source is brought to 4k+1 frames / multiple-of-32 size
            (``trim`` pads a 2-4 frame clip up to 5 frames rather than cut it to 1).
        size: ``"model"`` (default): the model's trained size (height x width) when its folder
            records one (toy models: ``training_summary.json``), reached by ``size_policy``
            (``resize`` stretches to it); else the source's own size rounded to multiples of 32.
            ``"native"``: always the source's own size (rounded). ``(height, width)``: that size.
        progress: ``True`` shows progress bars; a callable is called as ``progress(step, total, phase)``
            after every step of every loop (:data:`flowstudio.jobs.progress.ProgressFn`).
        **options: any :class:`EditSettings` field (``method``, ``steps``, ``injection``, ...).

    Raises:
        InputError: a prompt is missing, the preset/method is unknown or the preset not validated, the
            mask or box does not fit.
    """
    # 1. settings and outputs, checked before anything loads
    s = resolve_settings(
        source_prompt=source_prompt, target_prompt=target_prompt, preset=preset, settings=settings, **options
    )
    student = _student_settings(model)
    if student is not None:  # the few-step editor: the student's steps, levels and no guidance
        s = student_edit_defaults(s, student, {k for k, v in options.items() if v is not None})
    if fps is not None:
        check_number("fps", fps, positive=True, what="; the output frame rate (None: the source's)")
    dtype = parse_dtype(dtype)
    if not isinstance(model, WanVideoPipeline):
        check_device(device)
    _check_size_option(size)
    if out is not None:
        source_file = source.path if isinstance(source, VideoClip) else source
        mask_file = mask if isinstance(mask, (str, os.PathLike)) and mask != "auto" else None
        check_edit_out(out, inputs=[source_file, mask_file, target_image])
    if mask is not None and box is not None:
        raise InputError("give either mask or box, not both")
    if target_image is not None and s.first_frame != "image":
        s = s.replace(first_frame="image")
    if s.first_frame == "image" and target_image is None:
        raise InputError("first_frame='image' needs target_image (the target's first frame)")

    # 2. inputs
    pipe = _load_pipeline(model, device, dtype, offload)
    raw, fps, source_name = _read_source(source, fps)
    target_size, size_note = _working_size(size, pipe)
    frames, report = normalize_clip(
        raw,
        frame_policy=frame_policy,  # type: ignore[arg-type]
        size_policy=size_policy,  # type: ignore[arg-type]
        multiple=pipe.size_multiple,
        target_size=target_size,
    )
    num_frames, height, width = frames.shape[:3]
    pipe.check_inputs(num_frames=num_frames, height=height, width=width, steps=s.steps)
    _check_memory(pipe, s, num_frames, height, width)
    pixel_mask = None
    if box is not None:
        pixel_mask = mask_from_box(box, num_frames, height, width)
    elif mask is not None and not (isinstance(mask, str) and mask == "auto"):
        raw_mask = to_pixel_mask(mask) if isinstance(mask, np.ndarray) else load_mask(mask)
        pixel_mask = check_mask(_normalise_mask(raw_mask, report), num_frames, height, width)
    if (
        s.blend is not None
        and s.blend.pixel_composite
        and s.blend.composite_mask == "mask"
        and pixel_mask is None
    ):
        raise InputError(
            "blend composite_mask 'mask' pastes the source's pixels outside the mask you give: pass mask= "
            "(a file or array; not 'auto') or box=, or use composite_mask 'change'"
        )
    image = _target_image(target_image, height, width) if target_image is not None else None

    start = time.perf_counter()
    # 3. encode
    x_src = pipe.encode_video(frames)
    shape = tuple(x_src.shape)
    source_first = None if s.first_frame == "none" else x_src[:, :, :1]
    target_first = pipe.encode_video(image[None]) if s.first_frame == "image" else source_first
    source = _conditioning(pipe, s.source_prompt, s.negative_prompt, s.source_guidance, source_first, shape)
    target = _conditioning(pipe, s.target_prompt, s.negative_prompt, s.target_guidance, target_first, shape)

    # 4. grid and controls
    grid = student_grid(s.steps, s.shift) if s.grid == "student" else flow_sigmas(s.steps, s.shift)
    sigmas = reschedule_sigmas(grid, s.reschedule.strength)
    context = EditContext(edit_sigmas=sigmas, num_steps=0 if sigmas is None else len(sigmas) - 1)
    if target.first_frame is not None:
        p_t, p_h, p_w = pipe.denoiser.patch_size
        context.token_keep = target.mask[0, 0, ::p_t, ::p_h, ::p_w].flatten().bool()
    denoiser = EditDenoiser(pipe.denoiser, context, max_rows=s.max_batch_rows)
    generator = torch.Generator().manual_seed(s.seed)
    controls, info = _feature_controls(s, pipe, context, shape, context.num_steps)
    if s.blend is None and (pixel_mask is not None or mask is not None):
        s = s.replace(blend=BlendConfig())  # a mask was given: blend with the default settings
    blend_mask = None
    if s.blend is not None and not _composite_only(s.blend):
        blend_mask = _blend_mask(s.blend, pixel_mask, pipe, denoiser, x_src, source, target, generator, info)
    job = EditJob(
        denoiser=denoiser,
        model=pipe.components.transformer,
        context=context,
        x_src=x_src,
        source=source,
        target=target,
        sigmas=sigmas if sigmas is not None else torch.zeros(1, dtype=torch.float64),
        feature_controls=controls,
        blend=None if blend_mask is None or s.blend is None else (s.blend, blend_mask),
        generator=generator,
        trajectory_device="cpu" if s.cache_on_cpu and x_src.device.type != "cpu" else None,
        progress=progress is True,
        observers=[ProgressController(progress)] if callable(progress) else [],
    )

    # 5. method
    latents = run_method(job, s) if sigmas is not None else x_src.clone()
    if sigmas is None:
        logger.info("reschedule strength 0: no edit step ran; the result is the source")
    if controls and controls[0].store is not None:
        info["feature_cache_bytes"] = controls[0].store.nbytes

    # 6. decode and write
    edited = pipe.decode_latents(latents)
    if s.blend is not None and s.blend.pixel_composite and s.blend.composite_mask != "blend":
        edited, region = pixel_composite(edited, frames, s.blend, pixel_mask)
        info["changed_fraction"] = round(float(region.mean()), 4)
    elif s.blend is not None and s.blend.pixel_composite and blend_mask is not None:
        strength_mask = 1.0 - s.blend.strength * (1.0 - blend_mask)
        edited = composite(
            edited,
            frames,
            pixel_mask_from_latent(strength_mask, num_frames, pipe.spatial_scale, pipe.temporal_scale),
        )
    result = EditResult(
        frames=edited,
        source_frames=frames,
        latents=latents,
        settings=s,
        mask=blend_mask,
        model_calls=denoiser.forward_calls,
        row_evaluations=denoiser.row_evaluations,
        seconds=time.perf_counter() - start,
        fps=fps,
        info={
            **info,
            **job.extras,
            "source": source_name,
            "model": str(getattr(pipe.components, "path", "")),
            "mask": "auto" if isinstance(mask, str) and mask == "auto" else _mask_description(mask, box),
            "target_image": None
            if target_image is None or isinstance(target_image, np.ndarray)
            else str(target_image),
            "normalize": report.describe(),
            "size": [num_frames, height, width],
            "size_mode": size_note,
        },
    )
    if out is not None:
        write_outputs(result, out)
    return result


def _check_size_option(size: Any) -> None:
    if size in ("model", "native"):
        return
    ok = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    )
    if not ok:
        raise InputError(f"size must be 'model', 'native' or (height, width) in pixels, got {size!r}")


def _working_size(size: Any, pipe: Any) -> tuple[tuple[int, int] | None, str]:
    """``(target_size, note)`` for :func:`normalize_clip` from the ``size`` option."""
    from flowstudio.models import TRAINING_SUMMARY, trained_size

    if size == "native":
        return None, "native: the source's size, rounded to multiples of the model's patch"
    if size == "model":
        trained = trained_size(getattr(pipe.components, "path", None))
        if trained is None:
            return None, "native: the model records no trained size"
        return trained, f"model: trained at {trained[0]}x{trained[1]} ({TRAINING_SUMMARY})"
    return (int(size[0]), int(size[1])), f"given: {size[0]}x{size[1]}"


def check_edit_out(out: str | os.PathLike, inputs: list[Any]) -> None:
    """The output mp4 and its siblings must be writable files that are not an input."""
    path = Path(out)
    if path.suffix.lower() != ".mp4":
        raise InputError(
            f"out must be an .mp4 path (the side-by-side and .json are written beside it), got "
            f"{str(path)!r}: change the extension to .mp4"
        )
    check_outputs(
        [path, path.with_name(f"{path.stem}_side_by_side.mp4"), path.with_suffix(".json")],
        inputs=[p for p in inputs if isinstance(p, (str, os.PathLike))],
        option="out",
    )


def _check_memory(pipe: Any, s: EditSettings, frames: int, height: int, width: int) -> None:
    """Refuse, before any model call, an edit the device cannot hold by the memory estimate."""
    from flowstudio.edit.memory import check_fits_memory

    components = pipe.components
    try:
        configs = {
            "transformer": dict(components.transformer.config),
            "vae": dict(components.vae.config),
            "text_encoder": components.text_encoder.config.to_dict(),
        }
        dtype = dtype_name(pipe.denoiser.dtype)
    except AttributeError:  # a stand-in pipeline (tests): nothing to estimate
        return
    source_rows = 2 if s.source_guidance != 1.0 else 1
    target_rows = 2 if s.target_guidance != 1.0 else 1
    rows = source_rows + target_rows if s.method == "flowedit" else max(source_rows, target_rows)
    check_fits_memory(
        configs=configs,
        height=height,
        width=width,
        frames=frames,
        batch_rows=min(rows, s.max_batch_rows or rows),
        device=pipe.device,
        dtype=dtype if dtype in DTYPES else "float32",
        what="source clip (size=..., fewer frames)",
    )


def _blend_mask(
    config: BlendConfig,
    pixel_mask: np.ndarray | None,
    pipe: WanVideoPipeline,
    denoiser: EditDenoiser,
    x_src: torch.Tensor,
    source: Conditioning,
    target: Conditioning,
    generator: torch.Generator,
    info: dict[str, Any],
) -> torch.Tensor:
    """Feathered latent edit mask ``(1, 1, T', H', W')``: from the pixel mask, else automatic."""
    if pixel_mask is not None:
        mask = latent_mask(
            pixel_mask, tuple(x_src.shape), temporal_scale=pipe.temporal_scale, feather=config.feather
        )
    else:
        binary = auto_mask(
            denoiser, x_src, source, target, threshold=config.auto_threshold, generator=generator
        )
        info["auto_mask_fraction"] = float(binary.mean())
        mask = feather_mask(binary, config.feather)
    return mask.to(x_src.device)


def run_method(job: EditJob, s: EditSettings) -> torch.Tensor:
    """Run ``s.method`` on ``job`` with the settings' solvers; returns the edited latent."""
    if s.method == "flowedit":
        tail = make_solver(s.generation_solver) if s.generation_solver else None
        return run_flowedit(job, s.flowedit, tail)
    inv_name, gen_name = METHOD_SOLVERS[s.method]
    inv_name = s.inversion_solver or inv_name
    inv_options = {"fixed_point_iters": s.fixed_point_iters} if inv_name == "euler" else {}
    return run_inversion_edit(
        job,
        make_solver(inv_name, **inv_options),
        make_solver(s.generation_solver or gen_name),
        start=s.reschedule.mode,
    )


def write_outputs(result: EditResult, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``out`` (edited mp4), ``<stem>_side_by_side.mp4`` and ``<stem>.json`` (a job record).

    Goes through :meth:`flowstudio.jobs.JobResult.write`, the one writer of every job's outputs.
    """
    from flowstudio.jobs.editing import edit_job_result, edit_outputs

    check_edit_out(out, inputs=[])
    result.outputs = edit_outputs(edit_job_result(result).write(out))
    logger.info("wrote %s", ", ".join(str(p) for p in result.outputs.values()))
    return result.outputs
