"""``run(GenerateRequest)``: text(+image)-to-video, checked before the model loads, written as a JobResult."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flowstudio.jobs.progress import ProgressController, ProgressFn
from flowstudio.jobs.provenance import model_provenance, runtime, versions
from flowstudio.jobs.requests import GenerateRequest
from flowstudio.jobs.result import JobResult, check_output_paths


def generation_settings(request: GenerateRequest) -> Any:
    """The pipeline's :class:`~flowstudio.pipeline.GenerationSettings` of ``request``."""
    from flowstudio.pipeline import GenerationSettings

    return GenerationSettings(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        num_frames=request.num_frames,
        height=request.height,
        width=request.width,
        steps=request.steps,
        guidance_scale=request.guidance_scale,
        shift=request.shift,
        solver=request.solver,
        seed=request.seed,
        image_conditioned=request.image is not None,
        timesteps=request.timesteps,
    )


# GenerateRequest field -> key of an exported DMD student's distill.json
_STUDENT_FIELDS = {
    "steps": "steps",
    "guidance_scale": "guidance_scale",
    "shift": "shift",
    "solver": "sampler",
}


def with_student_defaults(request: GenerateRequest, model_dir: Path | None) -> GenerateRequest:
    """A distilled student (a folder with ``distill.json``, :mod:`flowstudio.distill.export`) samples
    with its own steps, guidance, shift and the ``dmd`` sampler: those fields the request left unset
    take the student's values; fields the caller set are kept as given."""
    from flowstudio.distill.export import student_settings

    student = student_settings(model_dir) if model_dir is not None else None
    if student is None:
        return request
    update = {
        f: student[k]
        for f, k in _STUDENT_FIELDS.items()
        if f not in request.model_fields_set and k in student
    }
    return request.model_copy(update=update) if update else request


def _load(request: GenerateRequest) -> Any:
    """Resolve the model folder, refuse a run the memory estimate says does not fit, then load."""
    import torch

    from flowstudio.checks import check_device, dtype_name, parse_dtype
    from flowstudio.edit.memory import check_fits_memory, model_configs
    from flowstudio.models import resolve_model
    from flowstudio.pipeline import WanVideoPipeline

    model_path = resolve_model(request.model)
    torch_dtype = parse_dtype(request.dtype)
    on_gpu = check_device(request.device).type == "cuda"
    compute_dtype = dtype_name(torch_dtype or (torch.bfloat16 if on_gpu else torch.float32))
    check_fits_memory(
        configs=model_configs(model_path),
        height=request.height,
        width=request.width,
        frames=request.num_frames,
        batch_rows=2 if request.guidance_scale != 1.0 else 1,
        device=request.device,
        dtype=compute_dtype,
        offload=request.offload,
    )
    return WanVideoPipeline.from_pretrained(
        model_path,
        device=request.device,
        dtype=torch_dtype,
        vae_dtype=parse_dtype(request.vae_dtype),
        offload=request.offload,
    )


def run_generate(
    request: GenerateRequest, model: Any = None, progress: ProgressFn | None = None
) -> JobResult:
    """Generate ``request``; ``model``: a loaded ``WanVideoPipeline`` (else ``request.model`` is loaded)."""
    from flowstudio.models import resolve_model
    from flowstudio.pipeline import WanVideoPipeline
    from flowstudio.video import read_image

    start = time.perf_counter()
    if model is not None and not isinstance(model, WanVideoPipeline):
        request = request.model_copy(update={"model": Path(model)})
        model = None
    folder = getattr(model.components, "path", None) if model is not None else resolve_model(request.model)
    request = with_student_defaults(request, Path(folder) if folder is not None else None)
    settings = generation_settings(request)
    if request.out is not None:
        check_output_paths(request.out, inputs=[request.image])
    pipe = model if model is not None else _load(request)
    loaded = time.perf_counter()
    first = read_image(request.image, size=(request.height, request.width)) if request.image else None
    controllers = [ProgressController(progress)] if progress is not None else []
    result = pipe.generate(settings, image=first, controllers=controllers, progress=False)
    done = time.perf_counter()
    path = getattr(pipe.components, "path", None)
    job = JobResult(
        kind="generate",
        videos={"video": result.frames},
        fps=request.fps,
        request=request.model_dump(mode="json"),
        settings=settings.to_dict(),
        seed=settings.seed,
        model_calls=result.model_calls,
        timings={"load": loaded - start, "run": done - loaded, "total": done - start},
        provenance={
            "versions": versions(),
            "model": model_provenance(path),
            **runtime(pipe),
        },
        info={"integer_timesteps": settings.integer_timesteps, "image": request.image and str(request.image)},
        engine=result,
    )
    if request.out is not None:
        job.write(request.out)
    return job
