"""Several processes opening one store at the same moment (servers starting together), for the
migration-race tests of the job store and the board."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any


def _open_after_barrier(open_store: Callable[[Any], Any], db: Any, start: Any, errors: Any) -> None:
    start.wait(30)
    try:
        open_store(db).close()
    except Exception as error:  # noqa: BLE001 - reported to the parent, asserted empty there
        errors.put(repr(error))


def open_at_once(
    open_store: Callable[[Any], Any], db: Any, processes: int = 3
) -> tuple[list[str], list[int]]:
    """Open ``open_store(db)`` in ``processes`` forked processes released by one barrier; return the
    errors they raised (as reprs) and their exit codes."""
    fork = multiprocessing.get_context("fork")  # this process's imports, without re-importing them
    start, errors = fork.Barrier(processes), fork.Queue()
    workers = [
        fork.Process(target=_open_after_barrier, args=(open_store, db, start, errors))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    found = [errors.get(timeout=1) for _ in range(errors.qsize())] if not errors.empty() else []
    return found, [worker.exitcode for worker in workers]
