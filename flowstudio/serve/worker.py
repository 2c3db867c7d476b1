"""The one worker thread: it owns the model and runs queued jobs one after another.

Each job runs through :func:`flowstudio.jobs.run` with ``out`` inside the job's own folder
(``<jobs_dir>/<id>/out.mp4``; :meth:`JobResult.write` moves files into place, the JSON last, so no
result file is ever half-written). The progress callback stores every step and raises
:class:`JobCancelled` at the first step after a cancel was asked for.

With ``keep_days``, the worker also runs the retention sweep (:mod:`flowstudio.serve.retention`)
when it starts and every ``sweep_every`` seconds after, between jobs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowstudio.serve.background import BackgroundLoop
from flowstudio.serve.store import JobStore

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised from the progress callback to stop a job whose cancel was asked for."""


def load_pipeline(model: str | Path | None, device: str = "cpu") -> Any:
    """The ``WanVideoPipeline`` of ``model`` (``None``: as ``resolve_model``)."""
    from flowstudio.models import resolve_model
    from flowstudio.pipeline import WanVideoPipeline

    return WanVideoPipeline.from_pretrained(resolve_model(model), device=device)


class Worker(BackgroundLoop):
    """Runs the store's queued jobs, oldest first, on one thread with one model.

    Args:
        store: the job store.
        jobs_dir: where each job's files go (``<jobs_dir>/<id>/``).
        load_model: called once on the worker thread; returns the model passed to every generate and
            edit job (avatar jobs load their own checkpoint).
        name: this worker's name in the store (``claimed_by``); workers sharing a database need
            distinct names, since a restart re-queues only its own worker's running jobs.
        keep_days: remove the files of jobs finished more than this many days ago (``None``: keep).
        sweep_every: seconds between two retention sweeps.
    """

    def __init__(
        self,
        store: JobStore,
        jobs_dir: Path,
        load_model: Callable[[], Any],
        name: str = "",
        keep_days: float | None = None,
        sweep_every: float = 3600.0,
    ) -> None:
        super().__init__("flowstudio-worker")
        self.store = store
        self.name = name
        self.jobs_dir = Path(jobs_dir)
        self.load_model = load_model
        self.model: Any = None
        self.model_error: str | None = None
        self.current: str | None = None
        self.keep_days, self.sweep_every = keep_days, sweep_every
        self.swept_at: float | None = None  # time.monotonic() of the last retention sweep
        self.swept: Any = None  # what it removed (a retention.Swept)

    def setup(self) -> None:
        """Load the model on the worker's thread (a failure is kept and fails every job)."""
        try:
            self.model = self.load_model()
        except Exception as error:  # noqa: BLE001 - reported by /healthz and on every job
            log.exception("loading the model failed")
            self.model_error = f"loading the model failed: {error}"

    def step(self) -> bool:
        """Sweep if due, then run the oldest queued job; ``False`` when none was queued."""
        self._sweep_if_due()
        job = self.store.claim_next(self.name)
        if job is None:
            return False
        self.current = job.id
        try:
            self._run(job.id, job.kind, json.loads(job.request))
        finally:
            self.current = None
        return True

    def _sweep_if_due(self) -> None:
        if self.keep_days is None:
            return
        if self.swept_at is not None and time.monotonic() - self.swept_at < self.sweep_every:
            return
        from flowstudio.serve.retention import sweep_expired

        self.swept_at = time.monotonic()
        try:
            self.swept = sweep_expired(self.store, self.jobs_dir, self.keep_days)
        except Exception:  # noqa: BLE001 - a failed sweep is logged; jobs go on running
            log.exception("the retention sweep failed")

    def _run(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        from flowstudio.jobs import parse_request, run
        from flowstudio.jobs.errors import error_message, is_input_error

        if self.model_error is not None:
            self.store.finish(job_id, "failed", error=self.model_error)
            return
        folder = self.jobs_dir / job_id
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob(".*.partial*"):  # of an attempt killed while writing: never served
            leftover.unlink()

        def progress(step: int, total: int, phase: str) -> None:
            if self.store.set_progress(job_id, step, total, phase) or self.stopping.is_set():
                raise JobCancelled

        try:
            request = parse_request(data).model_copy(update={"out": folder / "out.mp4"})
            result = run(request, model=self.model if kind != "avatar" else None, progress=progress)
        except JobCancelled:
            if self.stopping.is_set() and not (self.store.get(job_id) or _NoJob).cancel_requested:
                return  # shutting down: left running, re-queued by the next start
            self.store.finish(job_id, "cancelled", error="cancelled while running")
            return
        except Exception as error:  # noqa: BLE001 - a job's failure is stored, the worker goes on
            if not is_input_error(error):
                log.exception("job %s failed", job_id)
            self.store.finish(job_id, "failed", error=error_message(error) or type(error).__name__)
            return
        files = {name: path.name for name, path in result.files.items()}
        self.store.finish(job_id, "succeeded", files=files)


class _NoJob:
    cancel_requested = False
