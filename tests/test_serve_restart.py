"""A real ``flowstudio serve`` process killed with SIGKILL mid-job, twice: every job is accounted for.

Four jobs on the packaged toy model. Kill 1 while the first runs: after the restart it is re-queued
once (attempts 2, a note saying so) and the others run. Kill 2 while it runs again: after the second
restart it fails with the reason; the others succeed. No result file is half-written at any point.

Marked slow: three server starts (torch, the model, and the studio page's gradio when mounted) take
~2.5 min on a loaded 2-core machine. Run it with ``make test-slow``.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from flowstudio.serve.process import ServerProcess  # noqa: E402

# ~40 denoising steps: long enough (a second or more on one core) to be killed mid-run
SLOW = {"kind": "generate", "prompt": "a red ball", "num_frames": 5, "height": 64, "width": 64, "steps": 40}


def _call(server: ServerProcess, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"}
    request = urllib.request.Request(server.url + path, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait_running(server: ServerProcess, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """The job once it is running with at least one step stored."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _call(server, f"/v1/jobs/{job_id}")
        if job["status"] == "running" and job["progress"]["step"] >= 1:
            return job
        assert job["status"] in ("queued", "running"), job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never ran")


def _wait_all(server: ServerProcess, ids: list[str], timeout: float = 180.0) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = {i: _call(server, f"/v1/jobs/{i}") for i in ids}
        if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs.values()):
            return jobs
        time.sleep(0.2)
    raise AssertionError(f"not all finished: {jobs}")


def _no_half_written(jobs_dir: Path) -> None:
    for path in jobs_dir.rglob("*"):
        assert ".partial" not in path.name and not path.name.endswith(".part"), path


@pytest.mark.slow
def test_kill_9_mid_job_twice_every_job_accounted_for(tmp_path):
    args = ["--db", str(tmp_path / "jobs.sqlite"), "--worker-name", "w0"]
    log = tmp_path / "server.log"
    first = ServerProcess(args, log).start()
    try:
        ids = [_call(first, "/v1/jobs", {**SLOW, "seed": seed})["id"] for seed in range(4)]
        _wait_running(first, ids[0])
    finally:
        first.kill()
    _no_half_written(tmp_path / "jobs")

    second = ServerProcess(args, log).start()
    try:
        again = _wait_running(second, ids[0])  # the oldest job, re-queued, runs first
        assert again["attempts"] == 2 and "re-queued once" in again["note"]
    finally:
        second.kill()
    _no_half_written(tmp_path / "jobs")

    with ServerProcess(args, log) as third:
        jobs = _wait_all(third, ids)
        listed = _call(third, "/v1/jobs?limit=10")
        assert listed["total"] == 4 and {j["id"] for j in listed["jobs"]} == set(ids)  # none lost or added
        killed = jobs[ids[0]]
        assert killed["status"] == "failed", killed
        assert "stopped while this job was running, 2 times" in killed["error"]
        for job_id in ids[1:]:
            job = jobs[job_id]
            assert job["status"] == "succeeded" and job["attempts"] == 1, job
            with urllib.request.urlopen(third.url + job["files"]["video"]) as response:
                assert response.read()[4:8] == b"ftyp"
            record = _call(third, job["files"]["record"])
            assert record["request"]["steps"] == 40
        assert not (tmp_path / "jobs" / ids[0] / "out.mp4").exists()
    _no_half_written(tmp_path / "jobs")
