"""The scoring worker: one thread that re-scores queued submissions with the benchmark's own runner.

A submission's outputs (the mp4s of an accepted archive, or a seeded run's ``outputs/``) are read by
:class:`flowstudio.bench.FolderMethod` and scored by :func:`flowstudio.bench.run_benchmark`, exactly as
``flowstudio bench score`` would score them; the results file it writes is what the board stores.
Numbers a submitter sends are never read. The run folder is named after the metric versions, so a
re-scoring after a metric change starts a fresh run instead of resuming the old one.

``workers`` (``board serve --score-workers N``) is passed to the runner as ``score_case(workers=N)``:
each case's per-frame work is split over N single-threaded processes, with the same numbers as one.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from flowstudio.board.context import Board
from flowstudio.board.store import versions_json
from flowstudio.errors import InputError
from flowstudio.metrics import versions
from flowstudio.serve.background import BackgroundLoop

log = logging.getLogger(__name__)


def current_versions() -> dict[str, str]:
    return versions("edit")


class ScoringWorker(BackgroundLoop):
    """Re-scores queued submissions, oldest first, on one background thread."""

    def __init__(self, board: Board, workers: int = 1) -> None:
        super().__init__("flowstudio-board-scorer")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            # refused at start, not at the first submission (where it would fail every scoring)
            raise InputError(f"score workers must be a whole number >= 1; got {workers!r}")
        self.board = board
        self.workers = workers
        self.current: str | None = None

    def requeue_stale(self) -> list[str]:
        """Queue every kept-output submission scored under other metric versions (called at start)."""
        ids = self.board.store.requeue_stale(current_versions())
        if ids:
            log.info("re-scoring %d submission(s): the metric versions changed", len(ids))
        return ids

    def step(self) -> bool:
        return self.run_once()

    def run_once(self) -> bool:
        """Score the oldest queued submission; ``False`` when none was queued."""
        submission = self.board.store.claim_next()
        if submission is None:
            return False
        self.current = submission.id
        try:
            self._score(submission.id)
        except Exception as error:  # noqa: BLE001 - a failed scoring is stored, the worker goes on
            log.exception("scoring %s failed", submission.id)
            self.board.store.fail(submission.id, f"scoring failed: {type(error).__name__}: {error}")
        finally:
            self.current = None
        return True

    def _score(self, submission_id: str) -> None:
        from flowstudio.bench.methods import FolderMethod
        from flowstudio.bench.runner import run_benchmark

        store = self.board.store
        submission = store.submission(submission_id)
        if submission is None or submission.outputs is None:
            store.fail(submission_id, "no outputs kept to score")
            return
        method = store.method_by_id(submission.method_id)
        name = method.name if method else "unknown"
        stamp = hashlib.sha256(versions_json(current_versions()).encode()).hexdigest()[:12]
        folder = self.board.submissions_dir / submission_id
        run = folder / f"run-{stamp}"
        results = run_benchmark(
            name,
            FolderMethod(Path(submission.outputs), name),
            self.board.testset,
            run,
            progress=False,
            workers=self.workers,
        )
        if store.record_results(submission_id, results):
            for old in folder.glob("run-*"):  # runs under older metric versions: replaced
                if old != run:
                    shutil.rmtree(old, ignore_errors=True)
        else:  # withdrawn while it was being scored: its files go too
            shutil.rmtree(folder, ignore_errors=True)
