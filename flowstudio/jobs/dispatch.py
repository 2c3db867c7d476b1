"""``run(request, model, progress)``: the one entry point of every job.

The CLI commands, ``bench run``, the demo and (next) the REST server build a request and call this;
none of them holds job logic of its own.
"""

from __future__ import annotations

from typing import Any

from flowstudio.errors import InputError
from flowstudio.jobs.progress import ProgressFn
from flowstudio.jobs.requests import AvatarRequest, EditRequest, GenerateRequest
from flowstudio.jobs.result import JobResult


def run(
    request: GenerateRequest | EditRequest | AvatarRequest,
    model: Any = None,
    progress: ProgressFn | None = None,
) -> JobResult:
    """Run ``request``; write its outputs when it names an ``out``; return the :class:`JobResult`.

    Args:
        request: what to do (validated when it was built).
        model: an already loaded model to run on (a ``WanVideoPipeline`` for generate and edit, a
            ``DualForceModel`` for avatar), or a checkpoint folder; ``None``: the request's model.
            A long-lived caller (server, benchmark) loads once and passes it to every job.
        progress: called as ``progress(step, total, phase)`` while the job runs.

    Raises:
        InputError: bad input found at run time (missing files, a size the model cannot take, an
            unvalidated preset...), before anything is written.
    """
    if isinstance(request, GenerateRequest):
        from flowstudio.jobs.generation import run_generate

        return run_generate(request, model, progress)
    if isinstance(request, EditRequest):
        from flowstudio.jobs.editing import run_edit

        return run_edit(request, model, progress)
    if isinstance(request, AvatarRequest):
        from flowstudio.jobs.avatar import run_avatar

        return run_avatar(request, model, progress)
    raise InputError(
        f"run() takes a GenerateRequest, EditRequest or AvatarRequest, got {type(request).__name__}; "
        "build one with flowstudio.jobs.parse_request(data)"
    )
