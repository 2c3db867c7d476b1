"""The job store's Alembic migrations: an empty database upgraded to head equals the SQLAlchemy models,
and a first-slice database (made by ``create_all`` before Alembic) is upgraded keeping its jobs.

With ``FLOWSTUDIO_TEST_POSTGRES_URL`` (a throwaway database: its ``jobs`` and ``alembic_version``
tables are dropped) the same checks and a job through the API run on PostgreSQL too.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("alembic")
pytest.importorskip("fastapi")

from alembic.autogenerate import compare_metadata  # noqa: E402
from alembic.migration import MigrationContext  # noqa: E402
from sqlalchemy import create_engine, inspect, text  # noqa: E402

from flowstudio.serve.migrate import upgrade  # noqa: E402
from flowstudio.serve.store import Base, JobStore  # noqa: E402
from tests.fork_fixtures import open_at_once  # noqa: E402

TINY = {"kind": "generate", "prompt": "a red ball", "num_frames": 5, "height": 64, "width": 64, "steps": 2}
POSTGRES = os.environ.get("FLOWSTUDIO_TEST_POSTGRES_URL")

#: The first slice's table, as its ``create_all`` made it on SQLite (unnamed unique constraint).
FIRST_SLICE_DDL = """
CREATE TABLE jobs (
    id VARCHAR(32) NOT NULL, kind VARCHAR(16) NOT NULL, request TEXT NOT NULL,
    status VARCHAR(16) NOT NULL, step INTEGER NOT NULL, total INTEGER NOT NULL, phase VARCHAR(32),
    created_at FLOAT NOT NULL, started_at FLOAT, finished_at FLOAT, error TEXT, note TEXT, files TEXT,
    idempotency_key VARCHAR(255), attempts INTEGER NOT NULL, cancel_requested BOOLEAN NOT NULL,
    PRIMARY KEY (id), UNIQUE (idempotency_key)
)"""


def _no_diff(engine: Any) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def _wipe(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS jobs"))
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


def test_an_empty_sqlite_database_upgraded_to_head_equals_the_models(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    assert _no_diff(store.engine) == []
    with store.engine.connect() as connection:
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0003"
    store.close()
    assert _no_diff(JobStore("sqlite://").engine) == []  # in memory too


def test_a_first_slice_database_is_upgraded_keeping_its_jobs(tmp_path):
    path = tmp_path / "old.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text(FIRST_SLICE_DDL))
        connection.execute(text("CREATE INDEX ix_jobs_status ON jobs (status)"))
        connection.execute(text("CREATE INDEX ix_jobs_created_at ON jobs (created_at)"))
        connection.execute(
            text(
                "INSERT INTO jobs VALUES ('a1', 'generate', '{}', 'queued', 0, 0, NULL, 1.0, NULL, NULL,"
                " NULL, NULL, NULL, 'key', 0, 0)"
            )
        )
    engine.dispose()
    store = JobStore(path)
    assert _no_diff(store.engine) == []
    job = store.get("a1")
    assert job.status == "queued" and job.owner == "" and job.idempotency_key == "key"
    # keys are per owner now: another owner may use "key"
    other, created = store.add("generate", TINY, "key", owner="bob")
    assert created and other.id != "a1" and store.by_key("key").id == "a1"
    store.close()


@pytest.mark.skipif(not POSTGRES, reason="FLOWSTUDIO_TEST_POSTGRES_URL is not set")
def test_postgres_migrations_store_and_api(tmp_path, monkeypatch):
    pytest.importorskip("psycopg")
    from fastapi.testclient import TestClient

    import flowstudio.jobs
    from flowstudio.serve.app import create_app

    _wipe(POSTGRES)
    engine = create_engine(POSTGRES)
    upgrade(engine, "0001")  # then the app upgrades 0001 -> head
    assert "owner" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    engine.dispose()

    def run(request: Any, model: Any = None, progress: Any = None) -> Any:
        progress(1, 1, "denoise")
        request.out.write_bytes(b"\0\0\0\x18ftyp")
        return SimpleNamespace(files={"video": request.out})

    monkeypatch.setattr(flowstudio.jobs, "run", run)
    app = create_app(POSTGRES, tmp_path / "jobs", load_model=lambda: None, worker_name="pg")
    with TestClient(app) as client:
        assert _no_diff(app.state.store.engine) == []
        ids = [client.post("/v1/jobs", json={**TINY, "seed": i}).json()["id"] for i in range(3)]
        same = client.post("/v1/jobs", json=TINY, headers={"Idempotency-Key": "k"}).json()["id"]
        assert client.post("/v1/jobs", json=TINY, headers={"Idempotency-Key": "k"}).json()["id"] == same
        deadline = time.monotonic() + 30
        while client.get("/healthz").json()["queued"] + client.get("/healthz").json()["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        jobs = client.get("/v1/jobs").json()
        assert jobs["total"] == 4 and {j["status"] for j in jobs["jobs"]} == {"succeeded"}
        assert {j["id"] for j in jobs["jobs"]} == {*ids, same}
        assert client.get(f"/v1/jobs/{ids[0]}/files/video").content[4:8] == b"ftyp"
    _wipe(POSTGRES)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_servers_opening_one_fresh_database_at_once_all_start(tmp_path, backend):
    """Three processes open one empty database at the same moment: the upgrade holds the database's
    lock, so none fails on a table another has just made (before: two of three failed on both)."""

    if backend == "postgresql":
        if not POSTGRES:
            pytest.skip("FLOWSTUDIO_TEST_POSTGRES_URL is not set")
        _wipe(POSTGRES)
    db = POSTGRES if backend == "postgresql" else tmp_path / "jobs.sqlite"
    found, exit_codes = open_at_once(JobStore, db)
    assert found == [] and exit_codes == [0, 0, 0]
    store = JobStore(db)
    with store.engine.connect() as connection:
        assert connection.scalar(text("SELECT version_num FROM alembic_version")) == "0003"
    store.close()
    if backend == "postgresql":
        _wipe(POSTGRES)


def test_the_wal_switch_is_retried_while_the_database_is_locked_and_other_errors_are_raised():
    import sqlite3

    from flowstudio.serve.store import set_wal_journal

    class Cursor:
        def __init__(self, errors: list[str]) -> None:
            self.errors, self.calls = errors, 0

        def execute(self, sql: str) -> None:
            assert sql == "PRAGMA journal_mode=WAL"
            self.calls += 1
            if self.errors:
                raise sqlite3.OperationalError(self.errors.pop(0))

    busy = Cursor(["database is locked", "database is locked"])
    set_wal_journal(busy, wait=0.0)
    assert busy.calls == 3
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        set_wal_journal(Cursor(["disk I/O error"]), wait=0.0)
    stuck = Cursor(["database is locked"] * 5)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        set_wal_journal(stuck, attempts=3, wait=0.0)
    assert stuck.calls == 3
