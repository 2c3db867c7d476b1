"""flowstudio serve (first slice): the job API over a SQLAlchemy store and one worker, via TestClient."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from flowstudio.serve.app import create_app  # noqa: E402
from flowstudio.serve.store import JobStore  # noqa: E402

TINY = {"kind": "generate", "prompt": "a red ball", "num_frames": 5, "height": 64, "width": 64, "steps": 2}


@pytest.fixture(scope="module")
def toy_pipeline() -> Any:
    """The packaged toy model, loaded once for the module."""
    import torch

    from flowstudio.serve.worker import load_pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_pipeline(None)
    torch.set_num_threads(threads)


def _client(tmp_path: Path, **kwargs: Any) -> TestClient:
    kwargs.setdefault("db", tmp_path / "jobs.sqlite")
    return TestClient(create_app(**kwargs))


def _wait(
    client: TestClient,
    job_id: str,
    until: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
    timeout: float = 60.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s: {job}")


def _assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["status"] == status and body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_a_generate_job_runs_to_success_and_its_files_are_served(tmp_path, toy_pipeline):
    with _client(tmp_path, load_model=lambda: toy_pipeline) as client:
        submitted = client.post("/v1/jobs", json=TINY)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        assert submitted.headers["location"] == f"/v1/jobs/{job_id}"
        job = _wait(client, job_id)
        assert job["status"] == "succeeded", job
        assert job["progress"]["step"] == job["progress"]["total"] == 2 and job["attempts"] == 1
        assert job["started_at"] <= job["finished_at"] and job["error"] is None
        assert set(job["files"]) == {"video", "record"}
        video = client.get(job["files"]["video"])
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert video.content[4:8] == b"ftyp"
        record = client.get(f"/v1/jobs/{job_id}/files/record").json()
        assert record["kind"] == "generate" and record["frames"] == [5, 64, 64]
        assert record["request"]["steps"] == 2
        listed = client.get("/v1/jobs", params={"status": "succeeded"}).json()
        assert [j["id"] for j in listed["jobs"]] == [job_id] and listed["total"] == 1
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["worker"]["model_loaded"]


def test_a_bad_request_is_refused_before_queueing_with_every_problem_named(tmp_path):
    with _client(tmp_path, start_worker=False) as client:
        bad = {
            "kind": "generate",
            "prompt": "x",
            "steps": 0,
            "height": "64",
            "colour": "red",
            "out": "/tmp/anywhere.mp4",
        }
        error = _assert_error(client.post("/v1/jobs", json=bad), 422, "invalid_request")
        fields = {p["field"] for p in error["problems"]}
        assert {"steps", "height", "colour", "out"} <= fields, error
        assert any("steps" in p["message"] for p in error["problems"])
        _assert_error(client.post("/v1/jobs", json={"kind": "paint"}), 422, "invalid_request")
        _assert_error(client.post("/v1/jobs", content=b"{not json"), 422, "invalid_request")
        _assert_error(client.post("/v1/jobs", json=[1, 2]), 422, "invalid_request")
        # a server-side input path: refused without an input root ...
        edit = {"kind": "edit", "source": "clip.mp4", "source_prompt": "a", "target_prompt": "b"}
        error = _assert_error(client.post("/v1/jobs", json=edit), 422, "invalid_request")
        assert [p["field"] for p in error["problems"]] == ["source"]
        _assert_error(client.get("/v1/jobs", params={"status": "done"}), 422, "invalid_parameters")
        _assert_error(client.get("/v1/jobs", params={"limit": 0}), 422, "invalid_parameters")
        assert client.get("/v1/jobs").json()["total"] == 0
    root = tmp_path / "inputs"
    root.mkdir()
    with _client(tmp_path, start_worker=False, input_root=root) as client:  # ... and outside the root
        outside = {"kind": "edit", "source": "../jobs.sqlite", "source_prompt": "a", "target_prompt": "b"}
        error = _assert_error(client.post("/v1/jobs", json=outside), 422, "invalid_request")
        assert "outside the input root" in error["problems"][0]["message"]


def test_an_idempotency_key_gives_the_same_job(tmp_path):
    with _client(tmp_path, start_worker=False) as client:
        first = client.post("/v1/jobs", json=TINY, headers={"Idempotency-Key": "k1"})
        again = client.post("/v1/jobs", json=TINY, headers={"Idempotency-Key": "k1"})
        assert first.status_code == again.status_code == 202
        assert first.json()["id"] == again.json()["id"]
        other = client.post("/v1/jobs", json=TINY, headers={"Idempotency-Key": "k2"})
        assert other.json()["id"] != first.json()["id"]
        changed = client.post("/v1/jobs", json={**TINY, "seed": 1}, headers={"Idempotency-Key": "k1"})
        _assert_error(changed, 409, "idempotency_conflict")
        assert client.get("/v1/jobs").json()["total"] == 2


def test_a_full_queue_answers_429_with_retry_after(tmp_path):
    with _client(tmp_path, start_worker=False, max_queue=2) as client:
        ids = [client.post("/v1/jobs", json=TINY).json()["id"] for _ in range(2)]
        assert [client.get(f"/v1/jobs/{i}").json()["position"] for i in ids] == [1, 2]
        error = _assert_error(full := client.post("/v1/jobs", json=TINY), 429, "queue_full")
        assert int(full.headers["retry-after"]) >= 1 and "2 jobs are queued" in error["message"]
        client.post(f"/v1/jobs/{ids[0]}/cancel")  # room again
        assert client.post("/v1/jobs", json=TINY).status_code == 202


def test_cancel_a_queued_job_and_errors_of_unknown_jobs(tmp_path):
    with _client(tmp_path, start_worker=False) as client:
        job_id = client.post("/v1/jobs", json=TINY).json()["id"]
        cancelled = client.post(f"/v1/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
        _assert_error(client.get("/v1/jobs/nope"), 404, "not_found")
        _assert_error(client.post("/v1/jobs/nope/cancel"), 404, "not_found")
        _assert_error(client.delete("/v1/jobs"), 405, "method_not_allowed")


def test_cancel_a_running_job_stops_it_at_the_next_step(tmp_path, monkeypatch):
    """A fake run (no model) that steps until the progress callback stops it."""
    import flowstudio.jobs

    steps = []

    def endless(request: Any, model: Any = None, progress: Any = None) -> Any:
        for step in range(1, 10_000):
            steps.append(step)
            progress(step, 10_000, "denoise")
            time.sleep(0.01)
        raise AssertionError("never cancelled")

    monkeypatch.setattr(flowstudio.jobs, "run", endless)
    with _client(tmp_path, load_model=lambda: None) as client:
        job_id = client.post("/v1/jobs", json=TINY).json()["id"]
        _wait(client, job_id, until=("running",))
        while not steps:
            time.sleep(0.01)
        assert client.post(f"/v1/jobs/{job_id}/cancel").json()["cancel_requested"]
        job = _wait(client, job_id, timeout=10)
        assert job["status"] == "cancelled" and job["files"] == {}
        assert len(steps) < 10_000


def test_after_a_restart_a_running_job_is_requeued_once_and_completes(tmp_path, toy_pipeline):
    db = tmp_path / "jobs.sqlite"
    with _client(tmp_path, db=db, start_worker=False) as client:
        interrupted = client.post("/v1/jobs", json=TINY).json()["id"]
        waiting = client.post("/v1/jobs", json={**TINY, "seed": 1}).json()["id"]
    store = JobStore(db)
    assert store.claim_next().id == interrupted  # as if the server died while running it
    store.close()
    with _client(tmp_path, db=db, load_model=lambda: toy_pipeline) as client:
        assert client.app.state.recovered == [interrupted]
        first, second = _wait(client, interrupted), _wait(client, waiting)
        assert first["status"] == second["status"] == "succeeded", (first, second)
        assert first["attempts"] == 2 and "re-queued" in first["note"]
        assert client.get(first["files"]["video"]).content[4:8] == b"ftyp"


def test_a_job_found_running_a_second_time_fails_with_the_reason(tmp_path):
    db = tmp_path / "jobs.sqlite"
    store = JobStore(db)
    job, _ = store.add("generate", TINY)
    store.claim_next()
    assert store.recover() == [job.id] and store.get(job.id).status == "queued"
    store.claim_next()
    store.close()
    with _client(tmp_path, db=db, start_worker=False) as client:
        failed = client.get(f"/v1/jobs/{job.id}").json()
        assert (
            failed["status"] == "failed" and "stopped while this job was running, 2 times" in failed["error"]
        )


def test_files_are_only_those_of_the_job_and_no_path_escapes(tmp_path):
    db = tmp_path / "jobs.sqlite"
    store = JobStore(db)
    done, _ = store.add("generate", TINY)
    other, _ = store.add("generate", {**TINY, "seed": 1})
    store.claim_next()
    folder = tmp_path / "jobs" / done.id
    folder.mkdir(parents=True)
    (folder / "out.json").write_text(json.dumps({"ok": True}))
    (tmp_path / "secret.txt").write_text("TOP-SECRET-CONTENT")
    store.finish(done.id, "succeeded", files={"record": "out.json"})
    store.close()
    with _client(tmp_path, db=db, start_worker=False) as client:
        assert client.get(f"/v1/jobs/{done.id}/files/out.json").json() == {"ok": True}
        for name in ("..%2F..%2Fsecret.txt", "..%2Fjobs.sqlite", "secret.txt", "out.mp4", "%2Fetc%2Fpasswd"):
            response = client.get(f"/v1/jobs/{done.id}/files/{name}")
            assert response.status_code == 404 and b"TOP-SECRET" not in response.content, name
        _assert_error(client.get(f"/v1/jobs/{other.id}/files/out.json"), 404, "not_found")
        _assert_error(client.get(f"/v1/jobs/{done.id}/files/../../secret.txt"), 404, "not_found")
