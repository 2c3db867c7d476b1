"""The studio's backend without a browser: request building, the checks it shares with ``POST /v1/jobs``,
and that its jobs land in the same store the REST API lists. No model runs (the worker is not started).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("fastapi")

from flowstudio.serve.store import JobStore  # noqa: E402
from flowstudio.serve.studio.backend import (  # noqa: E402
    StudioBackend,
    StudioInputError,
    drawn_mask,
    edit_request_data,
    parse_box,
)
from flowstudio.serve.studio.examples import EDIT_EXAMPLES, avatar_example, edit_example  # noqa: E402
from flowstudio.serve.worker import Worker  # noqa: E402


@pytest.fixture
def backend(tmp_path: Path) -> Any:
    store = JobStore(tmp_path / "jobs.sqlite")
    worker = Worker(store, tmp_path / "jobs", lambda: None)  # never started: jobs stay queued
    yield StudioBackend(store, worker, tmp_path / "jobs", max_queue=2)
    store.close()


def _edit(backend: StudioBackend, **changes: Any) -> dict[str, Any]:
    folder = backend.upload_folder()
    source, source_prompt, target_prompt = edit_example(EDIT_EXAMPLES[0].label, folder)
    fields: dict[str, Any] = dict(
        source=source,
        source_prompt=source_prompt,
        target_prompt=target_prompt,
        method="flowedit",
        preset=None,
        steps=4,
        source_guidance=1.5,
        target_guidance=5.0,
        blend_strength=1.0,
        injection_strength=0.0,
        seed=0,
        region="whole frame",
    )
    return edit_request_data(**(fields | changes))


def test_a_studio_edit_is_queued_in_the_store_the_api_lists(backend: StudioBackend) -> None:
    submitted = backend.submit(_edit(backend, region="box", box=(10, 20, 90, 110)))
    jobs, total = backend.store.list()
    assert total == 1 and jobs[0].id == submitted.job_id and jobs[0].kind == "edit"
    state = backend.state(submitted.job_id)
    assert state.status == "queued" and state.position == 1 and state.describe() == "queued (position 1)"
    import json

    request = json.loads(jobs[0].request)
    assert request["box"] == [10, 20, 90, 110] and request["blend"]["strength"] == 1.0
    assert Path(request["source"]).is_relative_to(backend.uploads)
    cancelled = backend.cancel(submitted.job_id)
    assert cancelled.status == "cancelled" and cancelled.finished


def test_bad_requests_are_named_before_anything_is_queued(backend: StudioBackend) -> None:
    with pytest.raises(StudioInputError, match="target_prompt"):
        backend.submit(_edit(backend, target_prompt=""))
    with pytest.raises(StudioInputError, match="not validated"):  # presets merge before queueing
        backend.submit(_edit(backend, preset="style"))
    outside = _edit(backend) | {"source": "/etc/passwd"}
    with pytest.raises(StudioInputError, match="outside the input root"):
        backend.submit(outside)
    with pytest.raises(StudioInputError, match="nothing is drawn"):
        _edit(backend, region="drawn mask")
    assert backend.store.list()[1] == 0


def test_the_queue_bound_is_the_apis(backend: StudioBackend) -> None:
    for _ in range(2):
        backend.submit(_edit(backend))
    with pytest.raises(StudioInputError, match="2 jobs are queued"):
        backend.submit(_edit(backend))


def test_box_text_and_drawn_masks() -> None:
    assert parse_box("") is None and parse_box(" (1, 2, 30, 40) ") == (1, 2, 30, 40)
    assert parse_box("1 2 30 40") == (1, 2, 30, 40)
    for bad in ("1, 2, 3", "a, b, c, d", "5, 5, 5, 9"):
        with pytest.raises(StudioInputError, match="box"):
            parse_box(bad)
    layer = np.zeros((64, 64, 4), np.uint8)
    assert drawn_mask({"background": None, "layers": [layer], "composite": None}) is None
    layer[10:20, 30:40, 3] = 255  # painted: the brush's alpha
    mask = drawn_mask({"layers": [layer]}, size=(128, 128))
    assert mask.shape == (128, 128) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255} and mask[30, 70] == 255 and mask[0, 0] == 0


def test_examples_are_rendered_by_the_worlds(tmp_path: Path) -> None:
    from flowstudio.video import read_video

    for example in EDIT_EXAMPLES:
        path, source_prompt, target_prompt = edit_example(example.label, tmp_path)
        assert source_prompt != target_prompt
        assert read_video(path).frames.shape == (17, 128, 128, 3)
    image, audio = avatar_example(tmp_path, seconds=1.0)
    from flowstudio.avatar.model.audio import read_audio

    assert image.stat().st_size > 0 and len(read_audio(audio, 16000)) == pytest.approx(16000, abs=50)


def test_with_tokens_the_page_asks_for_a_token_and_its_jobs_are_the_tokens(tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    from fastapi.testclient import TestClient

    from flowstudio.serve.app import create_app
    from flowstudio.serve.auth import Tokens
    from flowstudio.serve.studio import mount_studio

    token = "s3cret-token-0123456789"
    app = create_app(tmp_path / "jobs.sqlite", start_worker=False, tokens=Tokens({token: "alice"}))
    mount_studio(app)
    with TestClient(app) as client:
        assert client.get("/ui/config").status_code == 401  # the page needs a login
        assert client.post("/ui/login", data={"username": "alice", "password": "wrong"}).status_code == 400
        assert client.post("/ui/login", data={"username": "bob", "password": token}).status_code == 400
        assert client.post("/ui/login", data={"username": "alice", "password": token}).status_code == 200
        assert client.get("/ui/config").status_code == 200
        # a job the page submits for the logged-in name is that token's in the REST API
        backend = StudioBackend.for_app(app)
        job_id = backend.submit(_edit(backend), owner="alice").job_id
        listed = client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"}).json()
        assert [job["id"] for job in listed["jobs"]] == [job_id]


def test_following_a_job_with_no_worker_says_so_instead_of_waiting(backend: StudioBackend) -> None:
    pytest.importorskip("gradio")
    from flowstudio.serve.studio.follow import follow

    job_id = backend.submit(_edit(backend)).job_id
    shown = list(follow(backend, job_id, lambda *a, **k: None, lambda files: ("done",), ("waiting",)))
    assert len(shown) == 1 and shown[0][1] == "waiting"
    assert "queued (position 1)" in shown[0][0] and "worker is not running" in shown[0][0]


def test_concurrent_submissions_never_pass_the_queue_bound(backend: StudioBackend) -> None:
    """Gradio submits from threads: the check and the insert are one step (``JobStore.admit``, the
    API's own), so eight simultaneous submissions against a bound of 2 queue exactly 2 and refuse the
    rest."""
    import threading

    data = [_edit(backend) for _ in range(8)]
    start = threading.Barrier(len(data))
    outcomes: list[str] = []

    def submit(item: dict[str, Any]) -> None:
        start.wait()
        try:
            backend.submit(item)
            outcomes.append("queued")
        except StudioInputError:
            outcomes.append("refused")

    threads = [threading.Thread(target=submit, args=(item,)) for item in data]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["queued"] * 2 + ["refused"] * 6
    assert backend.store.count("queued") == 2


def test_a_logged_in_page_is_held_to_its_tokens_limit_like_the_api(tmp_path: Path) -> None:
    """Mounted on a server with tokens, the page's jobs count against the logged-in name's
    ``--max-per-token``, together with that name's API jobs; another name has its own room."""
    from fastapi.testclient import TestClient

    from flowstudio.serve.app import create_app
    from flowstudio.serve.auth import Tokens

    alice, bob = "alice-token-0123456789", "bob-token-0123456789ab"
    app = create_app(
        tmp_path / "jobs.sqlite",
        start_worker=False,
        tokens=Tokens({alice: "alice", bob: "bob"}),
        max_queue=10,
        max_per_token=2,
    )
    with TestClient(app) as client:
        backend = StudioBackend.for_app(app)
        assert backend.max_queue == 10 and backend.max_per_token == 2
        tiny = {"kind": "generate", "prompt": "a red ball", "num_frames": 5, "height": 64, "width": 64}
        headers = {"Authorization": f"Bearer {alice}"}
        assert client.post("/v1/jobs", json=tiny, headers=headers).status_code == 202
        backend.submit(_edit(backend), owner="alice")
        with pytest.raises(StudioInputError, match="this token has 2 jobs queued or running"):
            backend.submit(_edit(backend), owner="alice")
        refused = client.post("/v1/jobs", json=tiny, headers=headers)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "token_limit"
        backend.submit(_edit(backend), owner="bob")  # bob's own room
        assert backend.store.count("queued", owner="alice") == 2
        assert backend.store.count("queued", owner="bob") == 1
    # an open server's page (and the studio alone) has one owner: only the queue bounds it
    open_app = create_app(tmp_path / "open.sqlite", start_worker=False, max_queue=3, max_per_token=1)
    with TestClient(open_app):
        open_backend = StudioBackend.for_app(open_app)
        assert open_backend.max_per_token is None
        for _ in range(3):
            open_backend.submit(_edit(open_backend))
        with pytest.raises(StudioInputError, match="3 jobs are queued"):
            open_backend.submit(_edit(open_backend))


def test_the_jobs_list_shows_the_owners_recent_jobs_and_cancels_or_deletes_them(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    backend = StudioBackend(store, Worker(store, tmp_path / "jobs", lambda: None), tmp_path / "jobs", 10)
    first = backend.submit(_edit(backend)).job_id
    second = backend.submit(_edit(backend)).job_id
    theirs = backend.submit(_edit(backend), owner="alice").job_id
    rows = backend.recent()
    assert [row[0] for row in rows] == [second, first]  # newest first, the owner's only
    assert [row[2] for row in rows] == ["queued (position 2)", "queued (position 1)"]
    assert len(rows[0]) == len(StudioBackend.COLUMNS) and rows[0][1] == "edit"
    assert [row[0] for row in backend.recent("alice")] == [theirs]
    # the first runs and succeeds: its row says so, with its run time
    assert store.claim_next().id == first
    with pytest.raises(StudioInputError, match="running: cancel it first"):
        backend.delete(first)
    store.finish(first, "succeeded", files={})
    row = {r[0]: r for r in backend.recent()}[first]
    assert row[2] == "succeeded" and row[4].endswith(" s")
    # another owner's job is not there to cancel or delete
    for act in (backend.delete, backend.cancel):
        with pytest.raises(StudioInputError, match="no job"):
            act(theirs, owner="")
    assert store.get(theirs).status == "queued"
    # deleting removes the row and the submission's upload folder
    folder = Path(json.loads(store.get(second).request)["source"]).parent
    assert folder.is_dir()
    backend.delete(second)
    assert store.get(second) is None and not folder.exists()
    assert [row[0] for row in backend.recent()] == [first]
    assert backend.cancel(theirs, owner="alice").status == "cancelled"
    store.close()


def test_the_page_has_a_jobs_tab(tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    from fastapi.testclient import TestClient

    from flowstudio.serve.app import create_app
    from flowstudio.serve.studio import mount_studio

    app = create_app(tmp_path / "jobs.sqlite", start_worker=False)
    mount_studio(app)
    with TestClient(app) as client:
        config = client.get("/ui/config").json()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"jobs-table", "jobs-refresh", "jobs-delete", "jobs-cancel", "edit-run", "generate-run"} <= ids
    labels = {c.get("props", {}).get("label") for c in config["components"] if c.get("type") == "tabitem"}
    assert "Jobs" in labels


def test_a_student_servers_page_starts_at_the_students_steps_and_guidance(tmp_path: Path) -> None:
    """Served on a DMD student (a folder with distill.json), the sliders start at its 4 steps and
    guidance 1 and the page says what the model is; on the toy teacher, at the page's own values."""
    pytest.importorskip("gradio")
    import shutil

    from fastapi.testclient import TestClient

    from flowstudio.models import TOY_MODEL
    from flowstudio.serve.app import create_app
    from flowstudio.serve.studio import mount_studio

    student = tmp_path / "student"
    student.mkdir()
    shutil.copy(Path(TOY_MODEL) / "model_index.json", student / "model_index.json")
    (student / "distill.json").write_text(
        json.dumps({"steps": 4, "guidance_scale": 1.0, "shift": 5.0, "sampler": "dmd"})
    )

    def values(model: Path | None) -> dict[str, Any]:
        app = create_app(tmp_path / f"{bool(model)}.sqlite", model=model, start_worker=False)
        mount_studio(app)
        with TestClient(app) as client:
            config = client.get("/ui/config").json()
        return {
            c["props"]["elem_id"]: c["props"].get("value")
            for c in config["components"]
            if c.get("props", {}).get("elem_id")
        }

    served = values(student)
    assert (served["generate-steps"], served["generate-guidance"]) == (4, 1.0)
    assert (served["edit-steps"], served["edit-source-guidance"], served["edit-target-guidance"]) == (
        4,
        1.0,
        1.0,
    )
    assert "4-step DMD student" in served["model-note"]
    teacher = values(None)
    assert (teacher["generate-steps"], teacher["generate-guidance"], teacher["edit-steps"]) == (20, 5.0, 10)
    assert "model-note" not in teacher


def test_choosing_a_preset_sets_the_controls_the_request_sends(
    backend: StudioBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page sends method, steps and guidance with every request and explicit values win over a
    preset's, so choosing a validated preset must put its own values into those controls; an
    unvalidated one changes nothing and says why; a student's server keeps the student's."""
    from flowstudio.edit.presets import PRESETS
    from flowstudio.jobs.merge import merge_edit_settings
    from flowstudio.serve.studio.backend import preset_label

    note, values = backend.preset_choice("color")
    assert values == {"method": "flowedit", "steps": 20, "source_guidance": 1.5, "target_guidance": 5.0}
    assert "70/80" in note and "Below its quality bar" not in note
    # the request built from the controls merges to exactly the preset's settings
    request = _edit(backend, preset="color", **values)
    overrides = {k: request[k] for k in ("method", "steps", "source_guidance", "target_guidance")}
    merged = merge_edit_settings(source_prompt="a", target_prompt="b", preset="color", **overrides)
    alone = merge_edit_settings(source_prompt="a", target_prompt="b", preset="color")
    assert merged == alone

    note, values = backend.preset_choice("background")
    assert values is not None and "Below its quality bar" not in note
    below = dataclasses.replace(PRESETS["background"], below_bar="keep PSNR 22.4 dB (bar 30 dB)")
    monkeypatch.setitem(PRESETS, "background", below)
    note, values = backend.preset_choice("background")
    assert values is not None and "Below its quality bar" in note
    note, values = backend.preset_choice("style")
    assert values is None and "not validated" in note
    assert backend.preset_choice("") == ("", None)
    assert preset_label(PRESETS["color"]) == "color"
    assert preset_label(PRESETS["product-replace"]) == "product-replace"
    below = dataclasses.replace(PRESETS["product-replace"], below_bar="accuracy 0.58 (bar 0.6)")
    assert preset_label(below) == "product-replace (below its bar)"
    assert preset_label(PRESETS["style"]) == "style (not validated)"

    store = JobStore(tmp_path / "student.sqlite")
    student = StudioBackend(
        store, backend.worker, tmp_path / "jobs", student={"steps": 4, "guidance_scale": 1.0}
    )
    note, values = student.preset_choice("color")
    assert values is None and "student's own" in note
    store.close()
