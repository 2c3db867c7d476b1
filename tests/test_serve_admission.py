"""Admission (``JobStore.admit``): the bounds and the insert they allow are one database transaction,
so several stores (servers) on one database never pass the queue bound or the per-owner bound together.

The SQLite tests open two ``JobStore`` instances on one file (two servers' worth of connections and
process locks) and submit from several threads each at the same moment. ``_new_job`` is slowed inside
the transaction (between the counts and the insert) so that without the database lock the bound would
be passed almost every run. With ``FLOWSTUDIO_TEST_POSTGRES_URL`` (a throwaway database: its ``jobs``
and ``alembic_version`` tables are dropped) the same runs on PostgreSQL.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from flowstudio.serve.store import AdmissionRefused, JobStore  # noqa: E402

TINY = {"kind": "generate", "prompt": "a red ball", "num_frames": 5, "height": 64, "width": 64, "steps": 2}
POSTGRES = os.environ.get("FLOWSTUDIO_TEST_POSTGRES_URL")


@pytest.fixture
def slow_insert(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widen the window between the counts and the insert (inside the admission transaction)."""
    original = JobStore._new_job

    def slow(*args: Any) -> Any:
        time.sleep(0.03)
        return original(*args)

    monkeypatch.setattr(JobStore, "_new_job", staticmethod(slow))


def _race(stores: list[JobStore], per_store: int, **admit: Any) -> tuple[list[str], list[str]]:
    """``per_store`` threads per store admit one job each at the same moment: (created ids, refusal codes)."""
    start = threading.Barrier(len(stores) * per_store)
    created: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def submit(store: JobStore, index: int) -> None:
        start.wait()
        try:
            job, new = store.admit("generate", TINY, **admit)
        except AdmissionRefused as error:
            with lock:
                refused.append(error.code)
            return
        with lock:
            if new:
                created.append(job.id)

    threads = [
        threading.Thread(target=submit, args=(store, index)) for store in stores for index in range(per_store)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return created, refused


def _two_stores(db: str | Path) -> list[JobStore]:
    return [JobStore(db), JobStore(db)]


def _check_bounds(stores: list[JobStore]) -> None:
    created, refused = _race(stores, per_store=5, max_queue=3)
    assert len(created) == 3 and refused == ["queue_full"] * 7, (created, refused)
    assert stores[1].count("queued") == 3
    # the per-owner bound, across both stores: alice may have 2 queued or running
    for job_id in created:
        stores[0].cancel(job_id)
    created, refused = _race(stores, per_store=4, max_queue=100, max_per_owner=2, owner="alice")
    assert len(created) == 2 and refused == ["token_limit"] * 6, (created, refused)
    assert stores[0].count(("queued", "running"), owner="alice") == 2
    # one idempotency key sent to both stores at once: one job
    created, refused = _race(stores, per_store=3, max_queue=100, idempotency_key="k", owner="bob")
    assert len(created) == 1 and not refused
    assert stores[0].list(owner="bob")[1] == 1


def test_two_stores_on_one_sqlite_file_never_pass_the_bounds_together(tmp_path, slow_insert):
    stores = _two_stores(tmp_path / "jobs.sqlite")
    try:
        _check_bounds(stores)
    finally:
        for store in stores:
            store.close()


def test_a_key_already_used_is_its_job_even_when_the_queue_is_full(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    first, created = store.admit("generate", TINY, max_queue=1, idempotency_key="k")
    assert created
    again, created = store.admit("generate", TINY, max_queue=1, idempotency_key="k")
    assert again.id == first.id and not created
    with pytest.raises(AdmissionRefused) as refused:
        store.admit("generate", TINY, max_queue=1, idempotency_key="other")
    assert refused.value.code == "queue_full" and refused.value.retry_after == 10  # no job ran yet
    assert store.count("queued") == 1
    store.close()


@pytest.mark.skipif(not POSTGRES, reason="FLOWSTUDIO_TEST_POSTGRES_URL is not set")
def test_two_stores_on_one_postgres_database_never_pass_the_bounds_together(slow_insert):
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS jobs"))
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    stores = _two_stores(POSTGRES)
    try:
        _check_bounds(stores)
    finally:
        for store in stores:
            store.close()


def test_a_store_that_cannot_admit_is_503_with_retry_after(tmp_path, monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from sqlalchemy.exc import OperationalError

    from flowstudio.serve.app import create_app

    app = create_app(tmp_path / "j.sqlite", start_worker=False)

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    monkeypatch.setattr(app.state.store, "admit", locked)
    with TestClient(app) as client:
        response = client.post("/v1/jobs", json=TINY)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "store_unavailable"
