"""A job in the page: submit it (or name what is wrong), follow its progress, show its files."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from flowstudio.errors import FlowstudioError
from flowstudio.serve.studio.backend import StudioBackend, StudioInputError

#: How often a running job's progress is read from the store, seconds.
POLL_SECONDS = 0.3

Outputs = tuple[Any, ...]


def submit_or_say(
    backend: StudioBackend,
    build: Callable[[Path], dict[str, Any]],
    empty: Outputs,
    request: gr.Request | None = None,
) -> tuple[str | None, Outputs | None]:
    """Build a request (its inputs kept in a new upload folder) and queue it, owned by the page's
    logged-in token name (``request.username``; none on an open server).

    Returns ``(job_id, None)``, or ``(None, outputs)`` with the status box naming the problem and
    ``empty`` for the tab's other outputs.
    """
    folder = backend.upload_folder()
    try:
        owner = getattr(request, "username", None) or ""
        return backend.submit(build(folder), owner=owner).job_id, None
    except (StudioInputError, FlowstudioError) as error:
        shutil.rmtree(folder, ignore_errors=True)
        return None, (f"**Not submitted.**\n\n{error}", *empty)


def follow(
    backend: StudioBackend,
    job_id: str,
    progress: gr.Progress,
    finished: Callable[[dict[str, Path]], Outputs],
    waiting: Outputs,
) -> Iterator[Outputs]:
    """Yield the status line (with ``waiting`` for the other outputs) until the job ends; then
    ``finished(files)`` if it succeeded."""
    started = time.monotonic()
    while True:
        try:
            state = backend.state(job_id)
        except StudioInputError:  # deleted meanwhile (the jobs tab, or DELETE /v1/jobs/{id})
            yield (f"**Job `{job_id}`** was deleted.", *waiting)
            return
        head = f"**Job `{job_id}`** (`GET /v1/jobs/{job_id}`): {state.describe()}"
        if state.finished:
            break
        if not backend.worker.alive:  # nothing would ever run it: say so instead of waiting forever
            yield (f"{head}. **The server's worker is not running** (see `/healthz`).", *waiting)
            return
        if state.total:
            progress((state.step, state.total), desc=state.phase or "step")
        yield (head, *waiting)
        time.sleep(POLL_SECONDS)
    if state.status != "succeeded":
        yield (head, *waiting)
        return
    yield (f"{head} in {time.monotonic() - started:.1f} s", *finished(state.files))


def downloads(files: dict[str, Path]) -> list[str]:
    """The result files to offer: main video, side-by-side (edits), JSON record."""
    return [str(files[name]) for name in ("video", "side_by_side", "record") if name in files]


def cancel(backend: StudioBackend, job_id: str | None) -> str:
    """Cancel the tab's last job; the status line says what happened."""
    if not job_id:
        return "No job to cancel."
    try:
        state = backend.cancel(job_id)
    except StudioInputError as error:
        return str(error)
    return f"**Job `{job_id}`**: {state.describe()} (a running job stops at its next step)"
