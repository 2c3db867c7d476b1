"""Removing jobs' files: one job's (``DELETE /v1/jobs/{id}``), and the retention sweep (``--keep-days``).

A job's files are its folder ``<jobs_dir>/<id>/`` (API uploads in ``inputs/``, results) and, for a
studio job, the folder of its submission under ``<jobs_dir>/uploads/`` (named by its request's input
paths). Nothing outside ``jobs_dir`` is ever removed: a request path under ``--input-root`` is the
user's file, not the job's.

The sweep removes the files of jobs that finished (succeeded, failed, cancelled) more than
``keep_days`` ago and records it on the row (``purged_at``, ``files`` emptied, a ``note``); rows are
kept, so the history, the counts and the idempotency keys stay. Studio upload folders that no job
names (e.g. a ShapeWorld example rendered but never submitted), untouched for ``keep_days`` and for
at least an hour (a submission in progress copies its files there before its job exists), go too; a
folder named by a job whose files are kept (queued, running, or finished within ``keep_days``) stays.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowstudio.serve.store import Job, JobStore
from flowstudio.serve.uploads import PATH_FIELDS

log = logging.getLogger(__name__)

DAY = 86400.0
#: An upload folder younger than this is never swept, whatever ``keep_days`` (a studio submission
#: copies its files there before its job exists).
UPLOAD_GRACE = 3600.0


def upload_folders(jobs_dir: Path, request: dict[str, Any]) -> list[Path]:
    """The studio upload folders (``<jobs_dir>/uploads/<one>/``) that a request's input paths are in."""
    uploads = jobs_dir.resolve() / "uploads"
    folders: list[Path] = []
    for name in PATH_FIELDS:
        value = request.get(name)
        if not isinstance(value, str) or value == "auto":
            continue
        path = Path(value).resolve()
        if path.is_relative_to(uploads) and path != uploads:
            folder = uploads / path.relative_to(uploads).parts[0]
            if folder not in folders:
                folders.append(folder)
    return folders


def job_folders(jobs_dir: Path, job_id: str, request: dict[str, Any]) -> list[Path]:
    """The folders holding a job's files: its own folder and its studio upload folders (if any)."""
    return [jobs_dir.resolve() / job_id, *upload_folders(jobs_dir, request)]


def remove_job_files(jobs_dir: Path, job: Job) -> list[Path]:
    """Remove the folders of ``job`` that exist; returns them."""
    import json

    removed = []
    for folder in job_folders(jobs_dir, job.id, json.loads(job.request)):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@dataclass
class Swept:
    """What one sweep removed."""

    jobs: list[str] = field(default_factory=list)
    upload_folders: list[str] = field(default_factory=list)


def sweep_expired(store: JobStore, jobs_dir: Path, keep_days: float, now: float | None = None) -> Swept:
    """Remove the files of jobs finished more than ``keep_days`` ago, and stale studio upload folders."""
    now = time.time() if now is None else now
    cutoff = now - keep_days * DAY
    swept = Swept()
    note = f"files removed by retention: finished more than {keep_days:g} days ago"
    while True:
        expired = store.expired(cutoff)
        if not expired:
            break
        for job in expired:
            remove_job_files(jobs_dir, job)
            store.mark_purged(job.id, note)
            swept.jobs.append(job.id)
    uploads = jobs_dir.resolve() / "uploads"
    if uploads.is_dir():
        needed = {
            folder for request in store.requests_with_files() for folder in upload_folders(jobs_dir, request)
        }
        for folder in uploads.iterdir():
            if not folder.is_dir() or folder in needed:
                continue
            newest = max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.rglob("*")])
            if newest < min(cutoff, now - UPLOAD_GRACE):
                shutil.rmtree(folder, ignore_errors=True)
                swept.upload_folders.append(folder.name)
    if swept.jobs or swept.upload_folders:
        log.info(
            "retention (%g days): removed the files of %d job(s) and %d stale upload folder(s)",
            keep_days,
            len(swept.jobs),
            len(swept.upload_folders),
        )
    return swept
