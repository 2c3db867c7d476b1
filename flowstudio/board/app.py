"""The FastAPI app of ``flowstudio board serve``: leaderboard pages, their JSON, submissions, scoring.

Errors have the job API's one shape (:mod:`flowstudio.serve.errors`)::

    {"error": {"status": 422, "code": "invalid_archive", "message": "...", "problems": [...]}}
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from flowstudio.bench.manifest import TestSet
from flowstudio.board.arena import ArenaSettings
from flowstudio.board.context import Board, Limits
from flowstudio.board.store import BoardStore
from flowstudio.serve.auth import Tokens
from flowstudio.serve.errors import install_error_handlers

log = logging.getLogger(__name__)


def create_app(
    db: str | Path,
    testset: TestSet,
    data_dir: str | Path,
    *,
    tokens: Tokens | None = None,
    limits: Limits | None = None,
    start_worker: bool = True,
    rater_tokens: Tokens | None = None,
    arena: ArenaSettings | None = None,
    score_workers: int = 1,
) -> FastAPI:
    """The board app on database ``db`` for ``testset``; uploads and caches go under ``data_dir``.

    The test set's cases are synced into the database on creation (the archive validator reads
    their frame counts and sizes from there). ``start_worker`` ``False`` leaves submissions queued
    (tests of the queue; a separate scorer process). ``rater_tokens``: who may vote in the arena
    (none: the arena is closed). ``score_workers``: processes for each case's per-frame scoring
    (``score_case(workers=N)``; the same numbers as 1).
    """
    from flowstudio.board import api, arena_routes, pages, submit
    from flowstudio.board.worker import ScoringWorker

    store = BoardStore(db)
    store.sync_cases(testset)
    board = Board(store, testset, Path(data_dir).resolve(), tokens or Tokens({}), limits or Limits())
    board.rater_tokens = rater_tokens or Tokens({})
    board.arena = arena or ArenaSettings()
    board.worker = ScoringWorker(board, workers=score_workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        if board.tokens.open:
            log.warning("no tokens configured: anyone who reaches this board can submit")
        app.state.recovered = store.recover()
        app.state.requeued = board.worker.requeue_stale()
        if start_worker:
            board.worker.start()
        try:
            yield
        finally:
            board.worker.stop()
            store.close()

    app = FastAPI(title="flowstudio board", version="1", lifespan=lifespan)
    app.state.board = board

    install_error_handlers(app)  # every error in the one error shape

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        return {
            "status": "ok",
            "testset": testset.name,
            "cases": len(testset),
            "queued": store.count("queued"),
            "scoring": store.count("scoring"),
            "worker_alive": board.worker.alive,
            "worker_failures_in_a_row": board.worker.failures,
            "worker_last_error": board.worker.last_error,
            "score_workers": board.worker.workers,
            "open": board.tokens.open,
        }

    app.include_router(api.router)
    app.include_router(submit.router)
    app.include_router(arena_routes.router)
    app.include_router(pages.router)
    return app
