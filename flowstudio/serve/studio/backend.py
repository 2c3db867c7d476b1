"""The studio's side of the job API: it submits to the same job store and worker as ``POST /v1/jobs``.

The page (:mod:`flowstudio.serve.studio`) never runs a model itself. A submission is checked by the
API's own :func:`~flowstudio.serve.app.validate_submission` (every problem named), queued in the
:class:`~flowstudio.serve.store.JobStore` and run by the one :class:`~flowstudio.serve.worker.Worker`;
so a studio job is listed by ``GET /v1/jobs`` like any other. Uploaded inputs are copied into
``<jobs_dir>/uploads/<token>/``, the studio's input root, and the request names them there.

Nothing here imports gradio: the request building and the checks are plain functions, tested alone.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowstudio.serve.store import FINAL, AdmissionRefused, JobStore
from flowstudio.serve.worker import Worker, load_pipeline

if TYPE_CHECKING:
    from flowstudio.edit.presets import Preset


class StudioInputError(Exception):
    """Bad input in the page: its message is shown in the page (never a traceback)."""


@dataclass
class Submitted:
    """A queued job: its id and the API route that shows it."""

    job_id: str

    @property
    def url(self) -> str:
        return f"/v1/jobs/{self.job_id}"


@dataclass
class JobState:
    """What the page shows of a job while it runs and when it ends."""

    status: str
    step: int
    total: int
    phase: str | None
    error: str | None
    position: int | None
    files: dict[str, Path]

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    def describe(self) -> str:
        """One line for the page: status, progress or place in the queue."""
        if self.status == "queued":
            return f"queued (position {self.position})" if self.position else "queued"
        if self.status == "running":
            if not self.total:
                return "running: loading"
            return f"running: {self.phase or 'step'} {self.step}/{self.total}"
        if self.status == "failed":
            return f"failed: {self.error}"
        if self.status == "cancelled":
            return f"cancelled ({self.error})" if self.error else "cancelled"
        return "succeeded"


class StudioBackend:
    """Submit, follow and cancel jobs of one store and worker (the serve app's, or the studio's own).

    Args:
        store: the job store.
        worker: the worker that runs the store's jobs (woken on every submission).
        jobs_dir: the jobs' folders; uploads go to ``<jobs_dir>/uploads``.
        max_queue: queued jobs beyond which a submission is refused (as the API's 429).
        max_per_token: queued plus running jobs one logged-in owner may have (as the API's 429
            ``token_limit``); ``None``: no per-owner bound (an open server, or ``flowstudio studio``
            alone, which has no login: every visitor is the one owner ``""``, bounded by ``max_queue``).
        student: the served model's own sampling when it is a DMD student (``distill.json``: steps,
            guidance_scale, shift, sampler), else ``None``; the page's sliders start from it.
    """

    def __init__(
        self,
        store: JobStore,
        worker: Worker,
        jobs_dir: Path,
        max_queue: int = 100,
        max_per_token: int | None = None,
        student: dict[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.student = student
        self.worker = worker
        self.jobs_dir = Path(jobs_dir).resolve()
        self.uploads = self.jobs_dir / "uploads"
        self.max_queue = max_queue
        self.max_per_token = max_per_token

    # -- inputs ----------------------------------------------------------------------------------

    def upload_folder(self) -> Path:
        """A new folder under the studio's input root for one submission's files."""
        folder = self.uploads / uuid.uuid4().hex
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def keep_upload(self, path: str | Path, folder: Path, name: str) -> Path:
        """Copy an uploaded file (gradio's temporary copy) into ``folder`` as ``name`` + its suffix."""
        source = Path(path)
        if not source.is_file():
            raise StudioInputError(f"the uploaded {name} is gone ({source.name}); upload it again")
        target = folder / f"{name}{source.suffix.lower()}"
        shutil.copyfile(source, target)
        return target

    # -- submitting ------------------------------------------------------------------------------

    @classmethod
    def for_app(cls, app: Any, max_queue: int | None = None) -> StudioBackend:
        """The backend of a ``create_app`` app: its store, worker, jobs' folder and bounds
        (``max_queue``: default, the app's ``--max-queue``)."""
        state = app.state
        queue = max_queue if max_queue is not None else getattr(state, "max_queue", 100)
        return cls(
            state.store,
            state.worker,
            state.jobs_dir,
            queue,
            getattr(state, "max_per_token", None),
            getattr(state, "student", None),
        )

    def page_defaults(self) -> dict[str, dict[str, Any]]:
        """The sliders' starting values per tab: the page's own for a teacher model; for a DMD student
        its steps and guidance (the few-step editor: FlowEdit on its levels, no guidance)."""
        if self.student is None:
            return {
                "generate": {"steps": 20, "guidance": 5.0},
                "edit": {"steps": 10, "source_guidance": 1.5, "target_guidance": 5.0},
            }
        steps, guidance = int(self.student.get("steps", 4)), float(self.student.get("guidance_scale", 1.0))
        return {
            "generate": {"steps": steps, "guidance": guidance},
            "edit": {"steps": steps, "source_guidance": guidance, "target_guidance": guidance},
        }

    def preset_choice(self, name: str) -> tuple[str, dict[str, Any] | None]:
        """What choosing preset ``name`` in the edit tab does: the note shown under it, and the
        values the method, steps and guidance controls take (``None``: they stay as they are).

        The page sends those controls with every request and explicit values win over a preset's
        (:func:`flowstudio.jobs.merge.merge_edit_settings`), so without this a preset chosen on the
        page ran at the page's 10 steps, not the 20 it was validated at. On a DMD student's server
        the controls stay at the student's own steps and guidance (a preset is validated on the
        teacher) and the note says so. An unvalidated preset changes nothing and the note says why.
        """
        from flowstudio.edit.presets import PRESETS

        if not name:
            return "", None
        record = PRESETS[name]
        if not record.available:
            return f"⚠ {record.unavailable_message()}", None
        note = record.evidence
        if record.below_bar:
            note += f". ⚠ Below its quality bar: {record.below_bar}"
        if self.student is not None:
            return note + ". On this student server the steps and guidance stay at the student's own.", None
        values = record.values or {}
        return note, {k: values[k] for k in ("method", "steps", "source_guidance", "target_guidance")}

    def model_note(self) -> str:
        """A line for the page about the served model ("" for a teacher)."""
        if self.student is None:
            return ""
        return (
            f"This server runs a {self.student.get('steps', 4)}-step DMD student: the steps and guidance "
            "start at its own; more steps or guidance than it was distilled for do not help it."
        )

    def submit(self, data: dict[str, Any], owner: str = "") -> Submitted:
        """Check and queue a request (its JSON form); :class:`StudioInputError` names every problem.

        ``owner``: the token name the page was logged in with (``""`` on an open server), so the job
        is listed by ``GET /v1/jobs`` for that token and counts against its per-token bound. Queued
        through :meth:`JobStore.admit`, the API's own admission step (bounds and insert in one
        transaction).
        """
        from flowstudio.serve.app import ApiError, validate_submission

        try:
            request = validate_submission(data, self.uploads)
        except ApiError as error:
            raise StudioInputError(_problems_text(error.problems or [], error.message)) from error
        if request.kind == "edit":
            _check_edit_settings(request)
        try:
            job, _ = self.store.admit(
                request.kind,
                request.model_dump(mode="json"),
                max_queue=self.max_queue,
                max_per_owner=self.max_per_token if owner else None,
                owner=owner,
            )
        except AdmissionRefused as refused:
            raise StudioInputError(refused.message) from refused
        self.worker.wake.set()
        return Submitted(job.id)

    def state(self, job_id: str) -> JobState:
        """The job's status, progress and (once succeeded) result files."""
        import json

        job = self.store.get(job_id)
        if job is None:
            raise StudioInputError(f"no job {job_id!r}")
        files: dict[str, Path] = {}
        if job.status == "succeeded" and job.files:
            folder = self.jobs_dir / job.id
            files = {name: folder / file for name, file in json.loads(job.files).items()}
        return JobState(
            status=job.status,
            step=job.step,
            total=job.total,
            phase=job.phase,
            error=job.error,
            position=self.store.position(job),
            files=files,
        )

    def cancel(self, job_id: str, owner: str | None = None) -> JobState:
        """Cancel a job (``owner``: only if it is that owner's, as the API's cancel)."""
        self._own(job_id, owner)
        self.store.cancel(job_id)
        return self.state(job_id)

    def _own(self, job_id: str, owner: str | None) -> Any:
        job = self.store.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise StudioInputError(f"no job {job_id!r}")
        return job

    # -- the jobs list ---------------------------------------------------------------------------

    #: The columns of :meth:`recent`.
    COLUMNS = ("job", "kind", "status", "submitted (UTC)", "run time", "note")

    def recent(self, owner: str = "", limit: int = 20) -> list[list[str]]:
        """The ``owner``'s latest jobs, newest first, one row each (:data:`COLUMNS`): the same jobs as
        ``GET /v1/jobs`` with that owner's token (``""``: an open server's, or the studio alone)."""
        jobs, _ = self.store.list(limit=limit, owner=owner)
        rows = []
        for job in jobs:
            state = JobState(
                status=job.status,
                step=job.step,
                total=job.total,
                phase=job.phase,
                error=job.error,
                position=self.store.position(job),
                files={},
            )
            submitted = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(job.created_at))
            ran = (
                f"{job.finished_at - job.started_at:.1f} s"
                if job.started_at is not None and job.finished_at is not None
                else ""
            )
            note = "files removed (retention)" if job.purged_at is not None else (job.note or "")
            rows.append([job.id, job.kind, state.describe(), submitted, ran, note])
        return rows

    def delete(self, job_id: str, owner: str = "") -> None:
        """Delete one of ``owner``'s jobs and its files, as ``DELETE /v1/jobs/{id}`` does (a running
        job is refused: cancel it first)."""
        from flowstudio.serve.retention import remove_job_files

        self._own(job_id, owner)
        removed = self.store.delete(job_id)
        if removed is None:
            current = self.store.get(job_id)
            if current is not None and current.status == "running":
                raise StudioInputError(f"job {job_id} is running: cancel it first, then delete it")
            raise StudioInputError(f"no job {job_id!r}")
        remove_job_files(self.jobs_dir, removed)


def standalone_backend(
    db: str | Path,
    jobs_dir: str | Path | None = None,
    model: str | Path | None = None,
    max_queue: int = 100,
    keep_days: float | None = None,
) -> StudioBackend:
    """A store and a started worker of the studio's own (``flowstudio studio``): the same job layer
    as ``flowstudio serve``, without the REST routes. The page alone has no login: one owner, bounded
    by ``max_queue`` (no per-token bound). ``keep_days``: the worker's retention sweep."""
    if jobs_dir is None:
        jobs_dir = Path(db).expanduser().parent / "jobs" if "://" not in str(db) else Path("flowstudio-jobs")
    store = JobStore(db)
    store.recover()
    worker = Worker(store, Path(jobs_dir).resolve(), lambda: load_pipeline(model), keep_days=keep_days)
    worker.start()
    from flowstudio.serve.app import served_student

    return StudioBackend(store, worker, Path(jobs_dir), max_queue, student=served_student(model))


def _problems_text(problems: list[dict[str, str]], fallback: str) -> str:
    if not problems:
        return fallback
    return "\n".join(f"- **{p['field']}**: {p['message']}" for p in problems)


def _check_edit_settings(request: Any) -> None:
    """Merge the preset and options now (no model is loaded), so an unvalidated preset or an option
    out of range is named at once instead of as a failed job a while later."""
    from flowstudio.errors import InputError
    from flowstudio.jobs.merge import merge_edit_settings

    try:
        merge_edit_settings(
            source_prompt=request.source_prompt,
            target_prompt=request.target_prompt,
            preset=request.preset,
            **request.overrides(),
        )
    except InputError as error:
        raise StudioInputError(str(error)) from error


# -- turning the page's inputs into request fields ------------------------------------------------


def preset_label(record: Preset) -> str:
    """A preset's name in the page's list, marked when it is not validated or below its bar."""
    if not record.available:
        return f"{record.name} (not validated)"
    return f"{record.name} (below its bar)" if record.below_bar else record.name


def parse_box(text: str | None) -> tuple[int, int, int, int] | None:
    """``"x0, y0, x1, y1"`` (pixels of the source) -> a box; empty -> ``None``."""
    if text is None or not text.strip():
        return None
    parts = [p for p in re.split(r"[,\s]+", text.strip().strip("()[]")) if p]
    try:
        values = tuple(int(float(p)) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise StudioInputError(
            f"the box must be four whole numbers x0, y0, x1, y1 in pixels of the source, got {text!r}"
        )
    x0, y0, x1, y1 = values
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise StudioInputError(f"the box must have 0 <= x0 < x1 and 0 <= y0 < y1, got {text!r}")
    return (x0, y0, x1, y1)


def drawn_mask(editor_value: Any, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """The region drawn on the first frame (gradio ImageEditor value) as a uint8 ``(H, W)`` mask, 255
    where any layer was painted; ``None`` when nothing was drawn. ``size`` (height, width): resize to
    the source's size (the editor may hold a scaled copy of the frame)."""
    if not isinstance(editor_value, dict):
        return None
    layers = [np.asarray(layer) for layer in editor_value.get("layers") or [] if layer is not None]
    painted = None
    for layer in layers:
        if layer.ndim == 3 and layer.shape[-1] == 4:
            hit = layer[..., 3] > 0  # the brush's alpha: painted pixels
        elif layer.ndim == 3:
            hit = layer.max(axis=-1) > 0
        else:
            hit = layer > 0
        painted = hit if painted is None else painted | hit
    if painted is None or not painted.any():
        return None
    mask = painted.astype(np.uint8) * 255
    if size is not None and mask.shape != tuple(size):
        from PIL import Image

        mask = np.asarray(Image.fromarray(mask).resize((size[1], size[0]), Image.NEAREST))
    return mask


#: The page's choices of edit region.
REGIONS = ("whole frame", "drawn mask", "box", "auto (from the prompts)")


def edit_request_data(
    *,
    source: Path,
    source_prompt: str,
    target_prompt: str,
    method: str,
    preset: str | None,
    steps: int,
    source_guidance: float,
    target_guidance: float,
    blend_strength: float,
    injection_strength: float,
    seed: int,
    region: str,
    mask_file: Path | None = None,
    box: tuple[int, int, int, int] | None = None,
) -> dict[str, Any]:
    """The JSON form of the page's edit request (what ``POST /v1/jobs`` would take).

    Blending strength applies to a region only (there is nothing to keep without one); injection
    strength 0 leaves feature injection off.
    """
    if region not in REGIONS:
        raise StudioInputError(f"edit region must be one of {', '.join(REGIONS)}, got {region!r}")
    data: dict[str, Any] = {
        "kind": "edit",
        "source": str(source),
        "source_prompt": source_prompt,
        "target_prompt": target_prompt,
        "method": method,
        "steps": int(steps),
        "source_guidance": float(source_guidance),
        "target_guidance": float(target_guidance),
        "seed": int(seed),
    }
    if preset:
        data["preset"] = preset
    if region == "drawn mask":
        if mask_file is None:
            raise StudioInputError("edit region is 'drawn mask' but nothing is drawn on the first frame")
        data["mask"] = str(mask_file)
    elif region == "box":
        if box is None:
            raise StudioInputError("edit region is 'box' but no box is given (x0, y0, x1, y1)")
        data["box"] = list(box)
    elif region.startswith("auto"):
        data["mask"] = "auto"
    if region != "whole frame":
        data["blend"] = {"strength": float(blend_strength)}
    if injection_strength > 0:
        data["injection"] = {"strength": float(injection_strength)}
    return data
