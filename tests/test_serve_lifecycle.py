"""flowstudio serve: deleting a job (``DELETE /v1/jobs/{id}``), the retention sweep (``--keep-days``),
and resuming server-sent events with ``Last-Event-ID``. No model runs (the worker is not started, or
runs a stand-in ``jobs.run``)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import update  # noqa: E402

from flowstudio.serve import events  # noqa: E402
from flowstudio.serve.app import create_app  # noqa: E402
from flowstudio.serve.auth import Tokens  # noqa: E402
from flowstudio.serve.retention import sweep_expired  # noqa: E402
from flowstudio.serve.store import Job, JobStore  # noqa: E402

TINY = {"kind": "generate", "prompt": "a red ball", "num_frames": 5, "height": 64, "width": 64, "steps": 2}
EDIT = {"kind": "edit", "source_prompt": "a red ball", "target_prompt": "a blue ball", "steps": 2}
ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789ab"
AS_ALICE, AS_BOB = {"Authorization": f"Bearer {ALICE}"}, {"Authorization": f"Bearer {BOB}"}
DAY = 86400.0


def _assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["status"] == status and body["error"]["code"] == code
    return body["error"]


def _app(tmp_path: Path, **kwargs: Any) -> Any:
    tokens = Tokens({ALICE: "alice", BOB: "bob"})
    return create_app(tmp_path / "j.sqlite", start_worker=False, tokens=tokens, **kwargs)


def _succeed(store: JobStore, jobs_dir: Path, job_id: str) -> Path:
    """Run a job by hand: claim it and finish it with a result file in its folder."""
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == job_id
    folder = jobs_dir / job_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "out.mp4").write_bytes(b"\0\0\0\x18ftypfake")
    store.finish(job_id, "succeeded", files={"video": "out.mp4"})
    return folder


# -- DELETE /v1/jobs/{id} --------------------------------------------------------------------------------


def test_delete_removes_the_job_and_its_files_and_only_for_its_owner(tmp_path):
    app = _app(tmp_path)
    jobs_dir = tmp_path / "jobs"
    with TestClient(app) as client:
        store = app.state.store
        form = {"request": json.dumps(EDIT)}
        upload = {"source": ("clip.mp4", b"some clip bytes", "video/mp4")}
        headers = {**AS_ALICE, "Idempotency-Key": "d1"}
        queued = client.post("/v1/jobs", data=form, files=upload, headers=headers).json()
        assert (jobs_dir / queued["id"] / "inputs" / "source.mp4").is_file()
        # not the owner: 404 as for a job that does not exist (ids do not leak); no token: 401
        _assert_error(client.delete(f"/v1/jobs/{queued['id']}", headers=AS_BOB), 404, "not_found")
        _assert_error(client.delete(f"/v1/jobs/{queued['id']}"), 401, "unauthorized")
        assert store.get(queued["id"]) is not None and (jobs_dir / queued["id"]).is_dir()
        # the owner deletes a queued job: it leaves the queue, its row and folder are gone
        response = client.delete(f"/v1/jobs/{queued['id']}", headers=AS_ALICE)
        assert response.status_code == 204 and response.content == b""
        assert store.get(queued["id"]) is None and not (jobs_dir / queued["id"]).exists()
        _assert_error(client.get(f"/v1/jobs/{queued['id']}", headers=AS_ALICE), 404, "not_found")
        _assert_error(client.delete(f"/v1/jobs/{queued['id']}", headers=AS_ALICE), 404, "not_found")
        assert client.get("/v1/jobs", headers=AS_ALICE).json()["total"] == 0
        # its idempotency key is free again: a new job
        again = client.post("/v1/jobs", data=form, files=upload, headers=headers).json()
        assert again["id"] != queued["id"]

        # a running job is refused (409): cancel it first, then delete it once it stopped
        folder = jobs_dir / again["id"]
        assert store.claim_next().id == again["id"]
        error = _assert_error(client.delete(f"/v1/jobs/{again['id']}", headers=AS_ALICE), 409, "job_running")
        assert "cancel it first" in error["message"] and folder.is_dir()
        assert client.post(f"/v1/jobs/{again['id']}/cancel", headers=AS_ALICE).json()["cancel_requested"]
        _assert_error(client.delete(f"/v1/jobs/{again['id']}", headers=AS_ALICE), 409, "job_running")
        store.finish(again["id"], "cancelled", error="cancelled while running")  # the worker stops it
        assert client.delete(f"/v1/jobs/{again['id']}", headers=AS_ALICE).status_code == 204
        assert not folder.exists()

        # a succeeded job: its results go with it
        done = client.post("/v1/jobs", json=TINY, headers=AS_BOB).json()
        folder = _succeed(store, jobs_dir, done["id"])
        assert client.get(f"/v1/jobs/{done['id']}/files/video", headers=AS_BOB).status_code == 200
        _assert_error(client.delete(f"/v1/jobs/{done['id']}", headers=AS_ALICE), 404, "not_found")
        assert client.delete(f"/v1/jobs/{done['id']}", headers=AS_BOB).status_code == 204
        assert not folder.exists()
        _assert_error(client.get(f"/v1/jobs/{done['id']}/files/video", headers=AS_BOB), 404, "not_found")
    assert sorted(p.name for p in jobs_dir.iterdir()) == []


def test_deleting_a_studio_job_removes_its_upload_folder_and_nothing_outside(tmp_path):
    pytest.importorskip("gradio")
    from flowstudio.serve.studio.backend import StudioBackend

    app = _app(tmp_path)
    with TestClient(app) as client:
        backend = StudioBackend.for_app(app)
        folder = backend.upload_folder()
        image = folder / "image.png"
        from PIL import Image

        Image.new("RGB", (64, 64), "red").save(image)
        other = backend.upload_folder()  # another submission's folder: kept
        outside = tmp_path / "keep.txt"
        outside.write_text("not the job's")
        data = {**TINY, "image": str(image)}
        job_id = backend.submit(data, owner="alice").job_id
        assert client.delete(f"/v1/jobs/{job_id}", headers=AS_ALICE).status_code == 204
        assert not folder.exists() and other.is_dir() and outside.is_file()


# -- retention ---------------------------------------------------------------------------------------------


def _age(store: JobStore, job_id: str, days: float) -> None:
    with store.sessions() as session, session.begin():
        session.execute(update(Job).where(Job.id == job_id).values(finished_at=time.time() - days * DAY))


def _touch_old(folder: Path, days: float) -> None:
    old = time.time() - days * DAY
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (old, old))


def test_the_retention_sweep_removes_old_finished_jobs_files_and_keeps_their_rows(tmp_path):
    app = _app(tmp_path)
    jobs_dir = tmp_path / "jobs"
    with TestClient(app) as client:
        store = app.state.store
        ids = [client.post("/v1/jobs", json=TINY, headers=AS_ALICE).json()["id"] for _ in range(3)]
        old_folder = _succeed(store, jobs_dir, ids[0])
        new_folder = _succeed(store, jobs_dir, ids[1])
        _age(store, ids[0], 10)
        _age(store, ids[1], 1)
        # studio upload folders: one old that no job names, one fresh, one old that a queued job names
        uploads = jobs_dir / "uploads"
        stale, fresh, named = (uploads / name for name in ("a" * 32, "b" * 32, "c" * 32))
        for folder in (stale, fresh, named):
            folder.mkdir(parents=True)
            (folder / "image.png").write_bytes(b"png")
        store.add("generate", {**TINY, "image": str(named / "image.png")})
        _touch_old(stale, 30)
        _touch_old(named, 30)

        swept = sweep_expired(store, jobs_dir, keep_days=7)
        assert swept.jobs == [ids[0]] and swept.upload_folders == [stale.name]
        assert not old_folder.exists() and new_folder.is_dir()
        assert store.get(ids[2]).status == "queued" and store.get(ids[2]).purged_at is None
        assert not stale.exists() and fresh.is_dir() and named.is_dir()
        job = client.get(f"/v1/jobs/{ids[0]}", headers=AS_ALICE).json()  # the row stays, files gone
        assert job["status"] == "succeeded" and job["files"] == {} and job["purged_at"] is not None
        assert "retention" in job["note"]
        _assert_error(client.get(f"/v1/jobs/{ids[0]}/files/out.mp4", headers=AS_ALICE), 404, "not_found")
        kept = client.get(f"/v1/jobs/{ids[1]}", headers=AS_ALICE).json()
        assert kept["purged_at"] is None and set(kept["files"]) == {"video"}
        assert client.get(kept["files"]["video"], headers=AS_ALICE).status_code == 200
        # a second sweep finds nothing more; a purged job can still be deleted
        assert sweep_expired(store, jobs_dir, keep_days=7).jobs == []
        assert client.delete(f"/v1/jobs/{ids[0]}", headers=AS_ALICE).status_code == 204


def test_the_worker_runs_the_sweep_with_keep_days(tmp_path, monkeypatch):
    import flowstudio.jobs

    def run(request: Any, model: Any = None, progress: Any = None) -> Any:
        Path(request.out).write_bytes(b"\0\0\0\x18ftypfake")
        return SimpleNamespace(files={"video": Path(request.out)})

    monkeypatch.setattr(flowstudio.jobs, "run", run)
    db = tmp_path / "j.sqlite"
    store = JobStore(db)
    old, _ = store.add("generate", TINY)
    claimed = store.claim_next()
    assert claimed is not None
    (tmp_path / "jobs" / old.id).mkdir(parents=True)
    store.finish(old.id, "failed", error="an old failure")
    _age(store, old.id, 3)
    store.close()
    app = create_app(db, load_model=lambda: None, keep_days=2, sweep_every=0.05)
    with TestClient(app) as client:
        deadline = time.monotonic() + 20
        while app.state.worker.swept is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert app.state.worker.swept is not None and app.state.worker.swept.jobs == [old.id]
        assert not (tmp_path / "jobs" / old.id).exists()
        assert client.get("/healthz").json()["keep_days"] == 2
        # a job that runs now is kept (finished less than 2 days ago), through later sweeps
        new_id = client.post("/v1/jobs", json=TINY).json()["id"]
        while client.get(f"/v1/jobs/{new_id}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.2)
        assert (tmp_path / "jobs" / new_id / "out.mp4").is_file()
        assert client.get(f"/v1/jobs/{new_id}").json()["purged_at"] is None


# -- server-sent events: Last-Event-ID -------------------------------------------------------------------


def _events(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":")
        if "event" in fields:
            found.append((fields["id"], fields["event"], json.loads(fields["data"])))
    return found


def test_a_reconnecting_client_gets_only_newer_events(tmp_path):
    app = _app(tmp_path, events_interval=0.01)
    with TestClient(app) as client:
        store = app.state.store
        first = client.post("/v1/jobs", json=TINY, headers=AS_ALICE).json()
        second = client.post("/v1/jobs", json=TINY, headers=AS_ALICE).json()
        # what the client saw before it lost the stream: the second job queued at position 2
        seen = f"{second['version']}-{second['position']}"
        assert second["position"] == 2
        # meanwhile the first job starts: the second moves to position 1 (its row did not change)
        assert store.claim_next().id == first["id"]
        url = f"/v1/jobs/{second['id']}/events"

        def finish_soon() -> None:
            time.sleep(0.3)
            store.cancel(second["id"])

        threading.Thread(target=finish_soon).start()
        got = _events(client.get(url, headers={**AS_ALICE, "Last-Event-ID": seen}).text)
        # position 1 (newer than position 2 at the same version), then the end: never position 2 again
        assert [(name, job["status"], job["position"]) for _, name, job in got] == [
            ("status", "queued", 1),
            ("end", "cancelled", None),
        ]
        assert got[0][0] == f"{second['version']}-1"
        last = got[-1][0]
        # reconnecting with the last event of an ended job: nothing newer (204, EventSource stops)
        response = client.get(url, headers={**AS_ALICE, "Last-Event-ID": last})
        assert response.status_code == 204 and response.content == b""
        # with an older id, or an id that is not ours, the end is sent (once)
        for header in (seen, "garbage", "12"):
            got = _events(client.get(url, headers={**AS_ALICE, "Last-Event-ID": header}).text)
            assert [(event_id, name) for event_id, name, _ in got] == [(last, "end")]
        # another token's job stays 404 with or without the header
        _assert_error(client.get(url, headers={**AS_BOB, "Last-Event-ID": last}), 404, "not_found")


def test_the_event_stream_skips_what_the_client_has(tmp_path):
    """``events.job_events`` on a scripted job: ids are the job's own, the same on every connection."""

    def job(version: int, status: str, position: int | None, step: int = 0) -> dict[str, Any]:
        return {"version": version, "status": status, "position": position, "progress": {"step": step}}

    script = [
        job(0, "queued", 3),
        job(0, "queued", 2),
        job(1, "running", None),
        job(2, "running", None, 1),
        job(2, "running", None, 1),
        job(3, "succeeded", None, 2),
    ]

    def stream(after: events.Key | None) -> list[str]:
        views = iter(script)
        out: list[str] = []

        async def collect() -> None:
            async for chunk in events.job_events(lambda: next(views, None), interval=0, after=after):
                out.extend(line[4:] for line in chunk.decode().splitlines() if line.startswith("id: "))

        asyncio.run(collect())
        return out

    everything = stream(None)
    assert everything == ["0-3", "0-2", "1-0", "2-0", "3-0"]
    for index, seen in enumerate(everything):
        assert stream(events.parse_event_id(seen)) == everything[index + 1 :]
    assert events.parse_event_id("7-0") == (7, 0) and events.parse_event_id("x-1") is None


def test_serve_passes_keep_days_to_the_worker(tmp_path, monkeypatch):
    pytest.importorskip("uvicorn")
    import uvicorn
    from typer.testing import CliRunner

    from flowstudio.cli import app as cli

    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.append(app))
    args = ["serve", "--db", str(tmp_path / "j.sqlite"), "--no-studio", "--keep-days", "3.5"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert served[0].state.worker.keep_days == 3.5
    result = CliRunner().invoke(cli, [*args[:-1], "-1"])
    assert result.exit_code != 0 and "keep-days" in result.output


def test_keep_days_zero_never_sweeps_an_upload_in_progress(tmp_path):
    store = JobStore(tmp_path / "j.sqlite")
    jobs_dir = tmp_path / "jobs"
    fresh, old = jobs_dir / "uploads" / ("d" * 32), jobs_dir / "uploads" / ("e" * 32)
    for folder in (fresh, old):
        folder.mkdir(parents=True)
        (folder / "source.mp4").write_bytes(b"clip")
    _touch_old(old, 2 / 24)  # two hours
    assert sweep_expired(store, jobs_dir, keep_days=0).upload_folders == [old.name]
    assert fresh.is_dir() and not old.exists()
    store.close()
