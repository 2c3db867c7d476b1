"""``run(EditRequest)``: settings merged and outputs checked before the model loads, then the edit."""

from __future__ import annotations

import os
import time
from typing import Any

from flowstudio.jobs.merge import merge_edit_settings
from flowstudio.jobs.progress import ProgressFn
from flowstudio.jobs.provenance import model_provenance, runtime, versions
from flowstudio.jobs.requests import EditRequest
from flowstudio.jobs.result import JobResult


def edit_job_result(
    result: Any,
    request: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> JobResult:
    """The :class:`JobResult` of an :class:`~flowstudio.edit.api.EditResult`.

    ``request`` is ``None`` for a direct :func:`flowstudio.edit.edit` call (no request was made).
    """
    info = dict(result.info)
    model_path = info.pop("model", None) or None
    return JobResult(
        kind="edit",
        videos={"video": result.frames, "side_by_side": result.side_by_side()},
        fps=result.fps,
        request=request,
        settings=result.settings.to_dict(),
        seed=result.settings.seed,
        model_calls=result.model_calls,
        timings=timings if timings is not None else {"run": result.seconds, "total": result.seconds},
        provenance={
            "versions": versions(),
            "model": model_provenance(model_path),
            "device": info.pop("device", None),
            "dtype": info.pop("dtype", None),
            "vae_dtype": info.pop("vae_dtype", None),
        },
        info={"row_evaluations": result.row_evaluations, **info},
        engine=result,
    )


def edit_outputs(files: dict[str, Any]) -> dict[str, Any]:
    """``EditResult.outputs`` (``video``, ``side_by_side``, ``settings``) from what JobResult wrote."""
    return {"video": files["video"], "side_by_side": files["side_by_side"], "settings": files["record"]}


def _input_files(request: EditRequest) -> list[Any]:
    mask = request.mask if isinstance(request.mask, str | os.PathLike) and request.mask != "auto" else None
    return [request.source, mask, request.target_image]


def run_edit(request: EditRequest, model: Any = None, progress: ProgressFn | None = None) -> JobResult:
    """Edit by ``request``; ``model``: a loaded ``WanVideoPipeline`` (else ``request.model`` is loaded)."""
    from flowstudio.checks import parse_dtype
    from flowstudio.edit.api import check_edit_out, edit
    from flowstudio.models import resolve_model
    from flowstudio.pipeline import WanVideoPipeline

    start = time.perf_counter()
    # the preset merges here, so an unknown or unvalidated one is refused before anything loads
    settings = merge_edit_settings(
        source_prompt=request.source_prompt,
        target_prompt=request.target_prompt,
        preset=request.preset,
        **request.overrides(),
    )
    if request.out is not None:
        check_edit_out(request.out, inputs=_input_files(request))
    if not isinstance(model, WanVideoPipeline):
        path = resolve_model(model if model is not None else request.model)
        model = WanVideoPipeline.from_pretrained(
            path,
            device=request.device,
            dtype=parse_dtype(request.dtype),
            vae_dtype=parse_dtype(request.vae_dtype),
            offload=request.offload,
        )
    loaded = time.perf_counter()
    result = edit(
        request.source,
        settings=settings,
        model=model,
        mask=request.mask,
        box=request.box,
        target_image=request.target_image,
        fps=request.fps,
        frame_policy=request.frame_policy,
        size_policy=request.size_policy,
        size=request.size,
        progress=progress if progress is not None else False,
    )
    done = time.perf_counter()
    result.info |= runtime(model)
    timings = {"load": loaded - start, "run": done - loaded, "total": done - start}
    job = edit_job_result(result, request.model_dump(mode="json"), timings)
    if request.out is not None:
        result.outputs = edit_outputs(job.write(request.out))
    return job
