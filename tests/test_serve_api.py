"""flowstudio serve: multipart uploads (413 beyond the limit), bearer tokens and per-token limits,
server-sent progress events, several workers on one store."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")

from fastapi.testclient import TestClient  # noqa: E402

from flowstudio.serve.app import create_app  # noqa: E402
from flowstudio.serve.auth import TokenFileError, Tokens, check_open, load_tokens, parse_tokens  # noqa: E402
from flowstudio.serve.errors import ApiError  # noqa: E402
from flowstudio.serve.store import JobStore  # noqa: E402
from flowstudio.serve.uploads import read_submission  # noqa: E402

TINY = {"kind": "generate", "prompt": "a red ball", "num_frames": 5, "height": 64, "width": 64, "steps": 2}
EDIT = {"kind": "edit", "source_prompt": "a red ball", "target_prompt": "a blue ball", "steps": 2}
ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789ab"


def _assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["status"] == status and body["error"]["code"] == code
    return body["error"]


def _wait(client: TestClient, job_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished: {job}")


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``jobs.run`` as a few quick steps that write a small file; returns the ids of the jobs it ran."""
    import flowstudio.jobs

    ran: list[str] = []
    lock = threading.Lock()

    def run(request: Any, model: Any = None, progress: Any = None) -> Any:
        with lock:
            ran.append(Path(request.out).parent.name)
        for step in range(1, 4):
            progress(step, 3, "denoise")
            time.sleep(0.02)
        Path(request.out).write_bytes(b"\0\0\0\x18ftypfake")
        return SimpleNamespace(files={"video": Path(request.out)})

    monkeypatch.setattr(flowstudio.jobs, "run", run)
    return ran


@pytest.fixture(scope="module")
def toy_pipeline() -> Any:
    import torch

    from flowstudio.serve.worker import load_pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_pipeline(None)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from edit_fixtures import gradient_clip

    from flowstudio.video import write_video

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(path, gradient_clip(), fps=8)
    return path.read_bytes()


# -- uploads -------------------------------------------------------------------------------------------


def test_an_uploaded_clip_is_stored_in_the_job_folder_and_edited(tmp_path, toy_pipeline, clip_bytes):
    with TestClient(create_app(tmp_path / "j.sqlite", load_model=lambda: toy_pipeline)) as client:
        files = {"source": ("my clip.mp4", clip_bytes, "video/mp4")}
        form = {"request": json.dumps(EDIT)}
        submitted = client.post("/v1/jobs", data=form, files=files, headers={"Idempotency-Key": "u1"})
        assert submitted.status_code == 202, submitted.text
        job = _wait(client, submitted.json()["id"])
        assert job["status"] == "succeeded", job
        assert job["request"]["source"] == "upload:source.mp4"  # not the server's path
        stored = tmp_path / "jobs" / job["id"] / "inputs" / "source.mp4"
        assert stored.read_bytes() == clip_bytes
        assert client.get(job["files"]["video"]).content[4:8] == b"ftyp"
        assert json.loads(client.get(job["files"]["record"]).content)["kind"] == "edit"
        # the same key with the same file: the same job; with other bytes: 409, and nothing stored
        again = client.post("/v1/jobs", data=form, files=files, headers={"Idempotency-Key": "u1"})
        assert again.status_code == 202 and again.json()["id"] == job["id"]
        other = {"source": ("my clip.mp4", clip_bytes + b"\0", "video/mp4")}
        _assert_error(
            client.post("/v1/jobs", data=form, files=other, headers={"Idempotency-Key": "u1"}),
            409,
            "idempotency_conflict",
        )
        assert [p.name for p in (tmp_path / "jobs").iterdir()] == [job["id"]]


def test_an_upload_beyond_the_limit_is_413_and_leaves_nothing(tmp_path):
    app = create_app(tmp_path / "j.sqlite", start_worker=False, max_upload=20_000)
    with TestClient(app) as client:
        form = {"request": json.dumps(EDIT)}
        big = {"source": ("clip.mp4", b"x" * 50_000, "video/mp4")}
        error = _assert_error(client.post("/v1/jobs", data=form, files=big), 413, "too_large")
        assert "20000 bytes" in error["message"]

        def chunked() -> Any:  # no Content-Length: the limit is found while streaming
            boundary = b"--b0undary"
            yield boundary + b'\r\nContent-Disposition: form-data; name="request"\r\n\r\n'
            yield json.dumps(EDIT).encode() + b"\r\n"
            yield boundary + b'\r\nContent-Disposition: form-data; name="source"; filename="a.mp4"\r\n\r\n'
            for _ in range(20):
                yield b"y" * 4096

        headers = {"content-type": "multipart/form-data; boundary=b0undary"}
        _assert_error(client.post("/v1/jobs", content=chunked(), headers=headers), 413, "too_large")
        small = {"source": ("clip.mp4", b"z" * 1000, "video/mp4")}
        assert client.post("/v1/jobs", data=form, files=small).status_code == 202
        assert client.get("/v1/jobs").json()["total"] == 1
    folders = list((tmp_path / "jobs").iterdir())
    assert len(folders) == 1 and [p.name for p in (folders[0] / "inputs").iterdir()] == ["source.mp4"]


def test_reading_stops_at_the_limit_and_no_partial_file_stays(tmp_path):
    """read_submission on a stream: it stops pulling chunks past the limit."""
    import asyncio

    pulled = []

    async def stream() -> Any:
        yield b'--B\r\nContent-Disposition: form-data; name="source"; filename="a.mp4"\r\n\r\n'
        for index in range(1000):
            pulled.append(index)
            yield b"q" * 1024

    request = SimpleNamespace(
        headers={"content-type": "multipart/form-data; boundary=B"}, stream=lambda: stream()
    )
    with pytest.raises(ApiError) as raised:
        asyncio.run(read_submission(request, tmp_path / "inputs", limit=10_000))
    assert raised.value.status == 413 and len(pulled) < 15
    # the caller removes the job folder; what was left before that is a .part file only, never source.mp4
    assert [p.name for p in (tmp_path / "inputs").iterdir()] == ["source.mp4.part"]


def test_multipart_problems_are_422_or_415_in_the_one_shape(tmp_path):
    root = tmp_path / "inputs"
    root.mkdir()
    (root / "clip.mp4").write_bytes(b"x")
    with TestClient(create_app(tmp_path / "j.sqlite", start_worker=False, input_root=root)) as client:
        clip = {"source": ("a.mp4", b"data", "video/mp4")}
        error = _assert_error(client.post("/v1/jobs", files=clip), 422, "invalid_request")
        assert "needs a 'request' field" in error["message"]
        both = {"request": json.dumps({**EDIT, "source": "clip.mp4"})}
        error = _assert_error(client.post("/v1/jobs", data=both, files=clip), 422, "invalid_request")
        problem = error["problems"][0]
        assert problem["field"] == "source" and "both uploaded" in problem["message"]
        error = _assert_error(
            client.post("/v1/jobs", data={"request": "{nope"}, files=clip), 422, "invalid_request"
        )
        assert "not JSON" in error["message"]
        error = _assert_error(
            client.post("/v1/jobs", data={"request": json.dumps(EDIT)}, files={"video": ("a", b"1")}),
            422,
            "invalid_request",
        )
        assert "unknown form field 'video'" in error["message"]
        bad = {"request": json.dumps({**EDIT, "steps": 0, "colour": "red"})}
        error = _assert_error(client.post("/v1/jobs", data=bad, files=clip), 422, "invalid_request")
        assert {"steps", "colour"} <= {p["field"] for p in error["problems"]}
        _assert_error(
            client.post("/v1/jobs", content=b"x", headers={"content-type": "text/plain"}),
            415,
            "unsupported_media_type",
        )
        # a server-side path inside the input root still works
        assert client.post("/v1/jobs", json={**EDIT, "source": "clip.mp4"}).status_code == 202
        assert client.get("/v1/jobs").json()["total"] == 1
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())


# -- tokens ----------------------------------------------------------------------------------------------


def test_tokens_401_ownership_and_per_token_limits(tmp_path):
    tokens = parse_tokens(f"alice {ALICE}\n# a comment\nbob:{BOB}", "test")
    app = create_app(tmp_path / "j.sqlite", start_worker=False, tokens=tokens, max_per_token=2)
    alice, bob = {"Authorization": f"Bearer {ALICE}"}, {"Authorization": f"Bearer {BOB}"}
    with TestClient(app) as client:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": ALICE}):
            response = client.post("/v1/jobs", json=TINY, headers=headers)
            _assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
        _assert_error(client.get("/v1/jobs"), 401, "unauthorized")
        assert client.get("/healthz").json()["open"] is False  # health stays open for probes
        first = client.post("/v1/jobs", json=TINY, headers={**alice, "Idempotency-Key": "k"}).json()
        second = client.post("/v1/jobs", json=TINY, headers=alice).json()
        full = client.post("/v1/jobs", json=TINY, headers=alice)
        error = _assert_error(full, 429, "token_limit")
        assert int(full.headers["retry-after"]) >= 1 and "limit is 2" in error["message"]
        # bob: his own key space, his own limit, none of alice's jobs
        mine = client.post("/v1/jobs", json=TINY, headers={**bob, "Idempotency-Key": "k"})
        assert mine.status_code == 202 and mine.json()["id"] != first["id"]
        assert [j["id"] for j in client.get("/v1/jobs", headers=bob).json()["jobs"]] == [mine.json()["id"]]
        assert {j["id"] for j in client.get("/v1/jobs", headers=alice).json()["jobs"]} == {
            first["id"],
            second["id"],
        }
        for path in (f"/v1/jobs/{first['id']}", f"/v1/jobs/{first['id']}/events"):
            _assert_error(client.get(path, headers=bob), 404, "not_found")
        _assert_error(client.post(f"/v1/jobs/{first['id']}/cancel", headers=bob), 404, "not_found")
        assert client.post(f"/v1/jobs/{first['id']}/cancel", headers=alice).json()["status"] == "cancelled"
        assert client.post("/v1/jobs", json=TINY, headers=alice).status_code == 202  # room again


def test_token_files_and_the_env_var(tmp_path):
    file = tmp_path / "tokens"
    file.write_text(f"# name token\nalice {ALICE}\nalice {ALICE}x\n\nbob {BOB}\n")
    tokens = load_tokens(file)
    assert tokens.owner(f"Bearer {ALICE}x") == "alice" and tokens.owner(f"bearer {BOB}") == "bob"
    assert tokens.owner("Bearer nope") is None and tokens.owner(None) is None
    env = load_tokens(environ={"FLOWSTUDIO_TOKENS": f"ci:{ALICE},ops:{BOB}"})
    assert env.owner(f"Bearer {BOB}") == "ops"
    assert load_tokens(environ={}).open and Tokens({}).owner(None) == ""
    for text, message in (
        ("alice short", "shorter than 16"),
        (f"alice {ALICE}\nbob {ALICE}", "listed twice"),
        ("just-one-word", "expected 'name token'"),
        (f"a/b {ALICE}", "letters, digits"),
    ):
        with pytest.raises(TokenFileError, match=message):
            parse_tokens(text, "t")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(TokenFileError, match="lists no token"):
        load_tokens(tmp_path / "empty")
    assert check_open(Tokens({}), "0.0.0.0", allow_open=False) is not None
    assert check_open(Tokens({}), "0.0.0.0", allow_open=True) is None
    assert check_open(Tokens({}), "127.0.0.1", allow_open=False) is None
    assert check_open(tokens, "0.0.0.0", allow_open=False) is None


def test_serve_refuses_an_open_public_address_and_logs_an_open_server(tmp_path, caplog):
    from typer.testing import CliRunner

    from flowstudio.cli import app

    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--db", str(tmp_path / "j.sqlite")])
    assert result.exit_code != 0 and "--open" in result.output and "no tokens" in result.output
    app = create_app(tmp_path / "j.sqlite", start_worker=False)
    with caplog.at_level(logging.WARNING, logger="flowstudio.serve.app"), TestClient(app) as client:
        assert client.get("/healthz").json()["open"] is True
    assert any("OPEN" in record.getMessage() for record in caplog.records)


# -- server-sent events ----------------------------------------------------------------------------------


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":")
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_progress_events_stream_until_the_job_ends(tmp_path, fake_run):
    app = create_app(tmp_path / "j.sqlite", load_model=lambda: None, events_interval=0.005)
    with TestClient(app) as client:
        job_id = client.post("/v1/jobs", json=TINY).json()["id"]
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-accel-buffering"] == "no"
            text = "".join(response.iter_text())
        events = _events(text)
        assert events[-1][0] == "end" and events[-1][1]["status"] == "succeeded"
        assert [name for name, _ in events[:-1]] == ["status"] * (len(events) - 1)
        steps = [job["progress"]["step"] for name, job in events if job["status"] == "running"]
        assert steps == sorted(steps) and steps and steps[-1] >= 2, events
        # ids are the job's own (version-position), each newer than the one before, one per event
        from flowstudio.serve.events import newer, parse_event_id

        ids = [parse_event_id(line[4:]) for line in text.splitlines() if line.startswith("id: ")]
        assert len(ids) == len(events) and None not in ids
        assert all(newer(later, earlier) for earlier, later in zip(ids, ids[1:], strict=False)), ids
        assert ids[-1] == (events[-1][1]["version"], 0)
        # a finished job: one `end` event at once
        again = _events(client.get(f"/v1/jobs/{job_id}/events").text)
        assert [name for name, _ in again] == ["end"]
        _assert_error(client.get("/v1/jobs/nope/events"), 404, "not_found")


# -- several workers -------------------------------------------------------------------------------------


def test_two_workers_on_one_store_run_every_job_once(tmp_path, fake_run):
    from flowstudio.serve.worker import Worker

    store = JobStore(tmp_path / "j.sqlite")
    ids = [store.add("generate", TINY)[0].id for _ in range(12)]
    workers = [Worker(store, tmp_path / "jobs", lambda: None, name=name) for name in ("gpu0", "gpu1")]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    while store.count(("queued", "running")) and time.monotonic() < deadline:
        time.sleep(0.05)
    for worker in workers:
        worker.stop()
    assert sorted(fake_run) == sorted(ids)  # each job once
    claimed = {store.get(i).claimed_by for i in ids}
    assert {store.get(i).status for i in ids} == {"succeeded"} and claimed <= {"gpu0", "gpu1"}
    # a restart of gpu0 re-queues only gpu0's running jobs
    a, _ = store.add("generate", TINY)
    b, _ = store.add("generate", TINY)
    store.claim_next("gpu0"), store.claim_next("gpu1")
    assert store.recover("gpu0") == [a.id] and store.get(b.id).status == "running"
    store.close()


def test_a_folder_left_by_a_crash_mid_upload_is_swept_at_start(tmp_path):
    import os

    jobs = tmp_path / "jobs"
    store = JobStore(tmp_path / "j.sqlite")
    queued, _ = store.add("generate", TINY)
    store.close()
    orphan, fresh, kept = "a" * 32, "b" * 32, queued.id
    for name in (orphan, fresh, kept, "uploads"):
        (jobs / name / "inputs").mkdir(parents=True)
        (jobs / name / "inputs" / "source.mp4.part").write_bytes(b"x")
    old = time.time() - 7200
    for name in (orphan, kept, "uploads"):
        for path in (jobs / name / "inputs" / "source.mp4.part", jobs / name / "inputs", jobs / name):
            os.utime(path, (old, old))
    app = create_app(tmp_path / "j.sqlite", start_worker=False)
    with TestClient(app):
        assert app.state.swept == [orphan]
    assert sorted(p.name for p in jobs.iterdir()) == sorted([fresh, kept, "uploads"])


def test_an_open_server_is_bounded_by_the_queue_not_the_per_token_limit(tmp_path):
    app = create_app(tmp_path / "j.sqlite", start_worker=False, max_queue=4, max_per_token=2)
    with TestClient(app) as client:
        assert [client.post("/v1/jobs", json=TINY).status_code for _ in range(5)] == [202] * 4 + [429]
        _assert_error(client.post("/v1/jobs", json=TINY), 429, "queue_full")
