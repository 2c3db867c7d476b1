"""Two real ``flowstudio serve`` processes on one PostgreSQL database and one jobs folder (the
"one server per GPU" layout, on CPU): jobs submitted to either run once each, on whichever worker is
free, and either server serves any job's files.

Needs ``FLOWSTUDIO_TEST_POSTGRES_URL`` (a throwaway database: its tables are dropped); marked slow
(two server starts).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("alembic")

from flowstudio.serve.process import ServerProcess  # noqa: E402

POSTGRES = os.environ.get("FLOWSTUDIO_TEST_POSTGRES_URL")
JOB = {"kind": "generate", "prompt": "a red ball", "num_frames": 5, "height": 64, "width": 64, "steps": 8}


def _call(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
@pytest.mark.skipif(not POSTGRES, reason="FLOWSTUDIO_TEST_POSTGRES_URL is not set")
def test_two_servers_on_one_postgres_database_run_each_job_once(tmp_path):
    pytest.importorskip("psycopg")
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS jobs"))
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    common = ["--db", POSTGRES, "--jobs-dir", str(tmp_path / "jobs"), "--no-studio"]
    first = ServerProcess([*common, "--worker-name", "w0"], tmp_path / "w0.log").start()
    try:
        with ServerProcess([*common, "--worker-name", "w1"], tmp_path / "w1.log") as second:
            urls = [first.url, second.url]
            ids = [_call(urls[i % 2], "/v1/jobs", {**JOB, "seed": i})["id"] for i in range(10)]
            deadline = time.monotonic() + 300
            while True:
                jobs = [_call(urls[0], f"/v1/jobs/{i}") for i in ids]
                if all(j["status"] == "succeeded" for j in jobs) or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert [j["status"] for j in jobs] == ["succeeded"] * 10, jobs
            assert [j["attempts"] for j in jobs] == [1] * 10  # each claimed once
            listed = _call(urls[1], "/v1/jobs?limit=100")
            assert listed["total"] == 10 and {j["id"] for j in listed["jobs"]} == set(ids)
            for job in jobs:  # any server serves any job's files
                with urllib.request.urlopen(urls[1] + job["files"]["video"]) as response:
                    assert response.read()[4:8] == b"ftyp"
            engine = create_engine(POSTGRES)
            query = text("SELECT claimed_by, count(*) FROM jobs GROUP BY claimed_by")
            with engine.connect() as connection:
                by = dict(connection.execute(query).all())
            engine.dispose()
            assert set(by) <= {"w0", "w1"} and sum(by.values()) == 10
            print(f"jobs per worker: {by}")
    finally:
        first.stop()
