"""Submissions to the board: every bad archive is refused with its reason and leaves nothing behind;
a good one is queued, re-scored on the server by the benchmark's scorer and shown; re-scored when
the metric versions change; withdrawn by its owner only."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

from fastapi.testclient import TestClient  # noqa: E402

from flowstudio.board.app import create_app  # noqa: E402
from flowstudio.board.context import Limits  # noqa: E402
from flowstudio.serve.auth import Tokens  # noqa: E402
from tests.board_fixtures import mp4_bytes, outputs_zip, tiny_set  # noqa: E402

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789abc"
TOKENS = Tokens({ALICE: "alice", BOB: "bob"})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("submit")
    testset = tiny_set(root / "set")
    good = outputs_zip(testset, root / "clips")
    return testset, good, root


def _app(world, tmp_path, db=None, **limits):
    testset, _, _ = world
    return create_app(
        db or tmp_path / "board.sqlite",
        testset,
        tmp_path / "data",
        tokens=TOKENS,
        limits=Limits(**limits),
        start_worker=False,
    )


@pytest.fixture
def client(world, tmp_path):
    with TestClient(_app(world, tmp_path)) as test_client:
        yield test_client


@pytest.fixture
def db_client(world, tmp_path, board_db):
    """``client`` once per database backend (SQLite, and PostgreSQL when configured)."""
    with TestClient(_app(world, tmp_path, board_db)) as test_client:
        yield test_client


def _post(client, archive: bytes, token: str = ALICE, **fields: str):
    data = {"method": "alice-edit", **fields}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(
        "/api/submissions",
        data=data,
        files={"archive": ("sub.zip", archive, "application/zip")},
        headers=headers,
    )


def _nothing_written(client) -> None:
    board = client.app.state.board
    assert board.store.submissions() == [], "a refused submission left a row"
    leftovers = [p for d in (board.submissions_dir, board.staging_dir) if d.exists() for p in d.rglob("*")]
    assert leftovers == [], f"a refused submission left files: {leftovers}"


def _refused(response, *needles: str) -> list[dict[str, str]]:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_archive"
    text = " | ".join(f"{p['field']}: {p['message']}" for p in error["problems"])
    for needle in needles:
        assert needle in text, f"{needle!r} not named in: {text}"
    return error["problems"]


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _with(good: bytes, extra: dict[str, bytes] | None = None, drop: str | None = None, **kw) -> bytes:
    """The good archive's members, ``drop`` removed, ``extra`` added or replacing."""
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        entries = {n: archive.read(n) for n in archive.namelist() if n != drop}
    entries.update(extra or {})
    return _zip(entries, **kw)


def test_too_large_is_413_while_streaming(world, tmp_path):
    _, good, _ = world
    with TestClient(_app(world, tmp_path, max_upload=len(good) // 2)) as client:
        response = _post(client, good)
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
        _nothing_written(client)


def test_not_a_zip(client):
    _refused(_post(client, b"PK but not really a zip" * 10), "not a zip archive")
    _nothing_written(client)


def test_zip_bomb_ratio(client, world):
    testset, good, _ = world
    bomb = _with(good, {f"{testset.cases[0].id}.mp4": bytes(4_000_000)}, compression=zipfile.ZIP_DEFLATED)
    _refused(_post(client, bomb), "zip bomb: compression ratio")
    _nothing_written(client)


def test_zip_bomb_total_size(world, tmp_path):
    _, good, _ = world
    with TestClient(_app(world, tmp_path, max_unpacked=len(good) // 2)) as client:
        _refused(_post(client, good), "zip bomb: the members unpack to")
        _nothing_written(client)


def test_path_traversal(client, world):
    testset, good, _ = world
    problems = _refused(_post(client, _with(good, {"../evil.mp4": b"x"})), "path traversal")
    assert problems[0]["field"] == "archive:../evil.mp4"
    _refused(_post(client, _with(good, {"/etc/evil.mp4": b"x"})), "path traversal")
    _nothing_written(client)


def test_symlink(client, world):
    testset, good, _ = world
    name = f"{testset.cases[0].id}.mp4"
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buffer, "w") as out:
        for member in src.namelist():
            if member != name:
                out.writestr(member, src.read(member))
        link = zipfile.ZipInfo(name)
        link.external_attr = (0o120777 << 16) | 0x20
        link.create_system = 3
        out.writestr(link, "/etc/passwd")
    _refused(_post(client, buffer.getvalue()), f"archive:{name}: a symlink")
    _nothing_written(client)


def test_unknown_case_id(client, world):
    _, good, _ = world
    _refused(_post(client, _with(good, {"not-a-case.mp4": b"x"})), "unknown case id 'not-a-case'")
    _nothing_written(client)


def test_missing_case_ids(client, world):
    testset, good, _ = world
    gone = testset.cases[2].id
    _refused(_post(client, _with(good, drop=f"{gone}.mp4")), f"missing case ids (1 of 5): {gone}")
    _nothing_written(client)


def test_wrong_frame_count(client, world):
    testset, good, root = world
    case = testset.cases[0]
    longer = np.concatenate([case.load_source()] * 2)[:9]
    _refused(
        _post(client, _with(good, {f"{case.id}.mp4": mp4_bytes(longer, root, "long.mp4")})),
        "wrong frame count: 9 frames, the case's source has 5",
    )
    _nothing_written(client)


def test_wrong_size(client, world):
    testset, good, root = world
    case = testset.cases[0]
    wide = np.zeros((5, 64, 96, 3), np.uint8)
    _refused(
        _post(client, _with(good, {f"{case.id}.mp4": mp4_bytes(wide, root, "wide.mp4")})),
        "wrong size: 64x96 (HxW), the case's source is 64x64",
    )
    _nothing_written(client)


def test_corrupt_video(client, world):
    testset, good, _ = world
    name = f"{testset.cases[1].id}.mp4"
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        real = archive.read(name)
    truncated = real[: len(real) // 3]
    _refused(_post(client, _with(good, {name: b"\x00\x01garbage" * 50})), f"archive:{name}: corrupt video")
    _refused(_post(client, _with(good, {name: truncated})), f"archive:{name}: corrupt video")
    _nothing_written(client)


def test_every_problem_named_in_one_response(client, world):
    testset, good, _ = world
    bad = _with(
        good,
        {"../up.mp4": b"x", "notes.txt": b"hi", "nope.mp4": b"x", f"{testset.cases[0].id}.mp4": b"junk"},
        drop=f"{testset.cases[4].id}.mp4",
    )
    problems = _refused(
        _post(client, bad, method="", settings="{not json"),
        "path traversal",
        "not an mp4",
        "unknown case id 'nope'",
        "missing case ids",
        "corrupt video",
        "method:",
        "settings: not JSON",
    )
    assert len(problems) == 7
    _nothing_written(client)


def test_tokens_are_needed(client, world):
    _, good, _ = world
    assert _post(client, good, token="").status_code == 401
    assert _post(client, good, token="wrong-token-0123456789").status_code == 401
    _nothing_written(client)


def _scored(client, submission_id: str) -> dict:
    board = client.app.state.board
    assert board.worker.run_once(), "nothing was queued"
    view = client.get(f"/api/submissions/{submission_id}").json()
    assert view["status"] == "scored", view
    return view


def _run_results(client, submission_id: str) -> dict:
    folder = client.app.state.board.submissions_dir / submission_id
    (run,) = folder.glob("run-*")
    return json.loads((run / "results.json").read_text())


def test_good_archive_is_rescored_on_the_server_and_shown(db_client, world):
    testset, good, _ = world
    claimed = json.dumps({"steps": 20, "composite": 1.0, "gt_psnr": 99.0})  # never read as numbers
    response = _post(db_client, good, method="alice-edit", paper="arXiv:0000.00000", settings=claimed)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "queued" and response.headers["location"].endswith(accepted["id"])
    view = _scored(db_client, accepted["id"])
    results = _run_results(db_client, accepted["id"])
    composites = [c["composite"]["value"] for c in results["cases"] if c["status"] == "ok"]
    assert len(composites) == len(testset)
    assert view["composite"] == pytest.approx(float(np.mean(composites)))
    assert view["composite"] < 1.0
    psnr = [c["metrics"]["gt_psnr"] for c in results["cases"]]
    assert view["scores"]["all"]["gt_psnr"]["mean"] == pytest.approx(float(np.mean(psnr)))
    assert 25.0 < view["scores"]["all"]["gt_psnr"]["mean"] < 99.0, "H.264 ground truth: high but finite PSNR"
    board = db_client.get("/api/board").json()
    (row,) = [r for r in board["rows"] if r["id"] == accepted["id"]]
    assert (
        row["method"] == "alice-edit" and row["submitter"] == "alice" and row["paper"] == "arXiv:0000.00000"
    )
    assert row["settings"] == json.loads(claimed)  # shown as the submitter's description, not as scores
    page = db_client.get(f"/cases/{testset.cases[0].id}")
    assert f"/media/submissions/{accepted['id']}/{testset.cases[0].id}.png" in page.text
    strip = db_client.get(f"/media/submissions/{accepted['id']}/{testset.cases[0].id}.png")
    assert strip.status_code == 200 and strip.headers["content-type"] == "image/png"


def test_rescored_when_metric_versions_change(db_client, world, monkeypatch):
    _, good, _ = world
    sid = _post(db_client, good).json()["id"]
    first = _scored(db_client, sid)
    board = db_client.app.state.board
    assert board.worker.requeue_stale() == [], "same versions: nothing to re-score"

    import flowstudio.bench.runner as runner
    import flowstudio.board.worker as worker

    real = runner.versions
    bumped = lambda suite: {**real(suite), "gt_psnr": "999"}  # noqa: E731
    monkeypatch.setattr(runner, "versions", bumped)
    monkeypatch.setattr(worker, "versions", bumped)
    assert board.worker.requeue_stale() == [sid]
    during = db_client.get("/api/board").json()["rows"]
    assert [r["status"] for r in during if r["id"] == sid] == ["queued"], "old scores stay shown meanwhile"
    second = _scored(db_client, sid)
    assert second["metric_versions"]["gt_psnr"] == "999" and first["metric_versions"]["gt_psnr"] != "999"
    runs = list((board.submissions_dir / sid).glob("run-*"))
    assert len(runs) == 1, "the run under the old versions is replaced"


def test_withdraw_by_owner_only(db_client, world):
    _, good, _ = world
    sid = _post(db_client, good).json()["id"]
    _scored(db_client, sid)
    headers = {"Authorization": f"Bearer {BOB}"}
    assert db_client.delete(f"/api/submissions/{sid}", headers=headers).status_code == 404
    response = db_client.delete(f"/api/submissions/{sid}", headers={"Authorization": f"Bearer {ALICE}"})
    assert response.status_code == 200 and response.json()["status"] == "withdrawn"
    assert all(r["id"] != sid for r in db_client.get("/api/board").json()["rows"])
    assert not (db_client.app.state.board.submissions_dir / sid).exists()
    assert db_client.get(f"/media/submissions/{sid}/x.png").status_code == 404


def test_method_name_of_another_submitter_is_refused(client, world):
    _, good, _ = world
    assert _post(client, good, method="shared-name").status_code == 202
    _refused(_post(client, good, token=BOB, method="shared-name"), "belongs to another submitter")


def test_worker_thread_scores_a_submission(world, tmp_path):
    import time

    testset, good, _ = world
    app = create_app(tmp_path / "b.sqlite", testset, tmp_path / "data", tokens=TOKENS)
    with TestClient(app) as client:
        sid = _post(client, good).json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/api/submissions/{sid}").json()["status"] in ("queued", "scoring"):
            assert time.monotonic() < deadline, "not scored within 120 s"
            time.sleep(0.2)
        assert client.get(f"/api/submissions/{sid}").json()["status"] == "scored"
        assert client.get("/healthz").json()["worker_alive"] is True


def test_pending_submissions_per_submitter_are_bounded(world, tmp_path):
    _, good, _ = world
    with TestClient(_app(world, tmp_path, max_pending=2)) as client:
        assert _post(client, good).status_code == 202
        assert _post(client, good).status_code == 202
        third = _post(client, good)
        assert third.status_code == 429 and third.json()["error"]["code"] == "too_many_pending"
        assert len(client.app.state.board.store.submissions()) == 2
        assert _post(client, good, token=BOB, method="bob-edit").status_code == 202, "another submitter"
        client.app.state.board.worker.run_once()  # one of alice's is scored: room again
        assert _post(client, good).status_code == 202


def test_score_workers_reach_the_scorer_with_the_numbers_of_one(world, tmp_path, monkeypatch):
    """``score_workers=N`` is the ``workers`` of every ``score_case`` call the board's worker makes, and
    the stored numbers are exactly those of one process (the same archive scored both ways)."""
    import flowstudio.bench.runner as runner
    from flowstudio.bench.metrics import parallel

    testset, good, _ = world
    seen: list[int | None] = []
    real = runner.score_case

    def spy(*args, **kwargs):
        seen.append(kwargs.get("workers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "score_case", spy)
    scored = {}
    for count in (1, 2):
        seen.clear()
        app = create_app(
            tmp_path / f"w{count}.sqlite",
            testset,
            tmp_path / f"data{count}",
            tokens=TOKENS,
            start_worker=False,
            score_workers=count,
        )
        with TestClient(app) as client:
            assert client.get("/healthz").json()["score_workers"] == count
            sid = _post(client, good).json()["id"]
            scored[count] = (_scored(client, sid), _run_results(client, sid))
        assert seen == [count] * len(testset), f"score_case got workers={seen}"
    assert 2 in parallel._POOLS, "two workers: the frame-parallel pool was used"
    (view1, results1), (view2, results2) = scored[1], scored[2]
    assert [c["metrics"] for c in results2["cases"]] == [c["metrics"] for c in results1["cases"]]
    assert view2["scores"] == view1["scores"] and view2["composite"] == view1["composite"]


def test_score_workers_are_checked_at_start(world, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import flowstudio.board.app as board_app
    from flowstudio.cli import app as cli
    from flowstudio.errors import InputError

    testset, _, _ = world
    with pytest.raises(InputError, match="score workers"):
        create_app(tmp_path / "z.sqlite", testset, tmp_path / "z", start_worker=False, score_workers=0)
    made = {}
    monkeypatch.setattr(board_app, "create_app", lambda *a, **kw: made.update(kw) or "app")
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: made.update(served=app))
    args = ["board", "serve", "--testset", str(testset.path), "--db", str(tmp_path / "c.sqlite")]
    result = CliRunner().invoke(cli, [*args, "--score-workers", "3"])
    assert result.exit_code == 0, result.output
    assert made["score_workers"] == 3 and made["served"] == "app"
    assert CliRunner().invoke(cli, args).exit_code == 0 and made["score_workers"] == 1, "default: 1"
    assert CliRunner().invoke(cli, [*args, "--score-workers", "0"]).exit_code == 2
