"""``run(AvatarRequest)``: a talking head streamed chunk by chunk, written (audio muxed) as a JobResult."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from flowstudio.jobs.progress import ProgressFn
from flowstudio.jobs.provenance import model_provenance, versions
from flowstudio.jobs.requests import AvatarRequest
from flowstudio.jobs.result import JobResult, check_output_paths


def run_avatar(request: AvatarRequest, model: Any = None, progress: ProgressFn | None = None) -> JobResult:
    """Generate by ``request``; ``model``: a loaded ``DualForceModel`` (else from ``request.checkpoint``)."""
    from flowstudio.avatar.inference.generate import TOY_CHECKPOINT, synthesize

    start = time.perf_counter()
    if request.out is not None:
        check_output_paths(request.out, inputs=[request.image, request.audio])
    made = synthesize(
        request.image,
        request.audio,
        checkpoint=request.checkpoint,
        model=model,
        steps=request.steps,
        seed=request.seed,
        device=request.device,
        progress=progress,
        audio_guidance=request.audio_guidance,
        context_sigma=request.context_sigma,
    )
    done = time.perf_counter()
    report = made.report
    folder = request.checkpoint or (None if report.random_weights else TOY_CHECKPOINT)
    job = JobResult(
        kind="avatar",
        videos={"video": made.video},
        fps=made.fps,
        request=request.model_dump(mode="json"),
        settings={
            "steps": report.steps,
            "seed": request.seed,
            "reference_image": report.reference_image,
            "audio_guidance": report.audio_guidance,
            "context_sigma": report.context_sigma,
        },
        seed=request.seed,
        model_calls=made.model_calls,
        timings={"load": made.load_seconds, "run": report.wall_seconds, "total": done - start},
        provenance={
            "versions": versions(),
            "model": model_provenance(folder, report.model),
            "device": request.device,
            "dtype": None,
        },
        info=report.to_dict(),
        audio=(made.waveform, made.rate),
        engine=report,
    )
    if request.out is not None:
        files = job.write(request.out)
        job.engine = replace(report, out=str(files["video"]))
        job.info["out"] = str(files["video"])
    return job
