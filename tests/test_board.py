"""The leaderboard site, first slice: database + migrations, seeding from real benchmark results,
the pages and their JSON, the filmstrips of the per-case viewer, the CLI."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

from fastapi.testclient import TestClient  # noqa: E402

from flowstudio.board.aggregate import aggregate  # noqa: E402
from flowstudio.board.app import create_app  # noqa: E402
from flowstudio.board.seed import seed_results  # noqa: E402
from flowstudio.board.store import BoardStore  # noqa: E402
from flowstudio.errors import InputError  # noqa: E402
from flowstudio.metrics.results import read_results  # noqa: E402
from tests.board_fixtures import bench_run, db_rows, tiny_set, wipe_board_tables  # noqa: E402
from tests.fork_fixtures import open_at_once  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny set and two real benchmark runs on it (results.json as `bench run` writes it)."""
    root = tmp_path_factory.mktemp("board")
    testset = tiny_set(root / "set")
    files = {m: bench_run(testset, m, root / "runs" / m) for m in ("identity", "ground-truth")}
    return testset, files


@pytest.fixture
def client(runs, tmp_path):
    testset, files = runs
    app = create_app(tmp_path / "board.sqlite", testset, tmp_path / "data", start_worker=False)
    store = app.state.board.store
    for file in files.values():
        seed_results(store, testset, file)
    with TestClient(app) as test_client:
        yield test_client


def _mean(values):
    return float(np.mean(values))


def test_migration_makes_the_board_tables_beside_the_job_store(board_db):
    from sqlalchemy import inspect

    from flowstudio.serve.store import JobStore

    if isinstance(board_db, str):  # PostgreSQL: the job store's tables go too (a throwaway database)
        wipe_board_tables(board_db, with_jobs=True)
    JobStore(board_db).close()
    BoardStore(board_db).close()
    store = BoardStore(board_db)  # opening again is a no-op upgrade
    tables = set(inspect(store.engine).get_table_names())
    store.close()
    assert {
        "jobs",
        "board_methods",
        "board_submissions",
        "board_scores",
        "board_cases",
        "board_votes",
        "board_likert",
    } <= tables
    assert db_rows(board_db, "select version_num from board_alembic_version") == [("b0003",)]
    if isinstance(board_db, str):
        wipe_board_tables(board_db, with_jobs=True)


def test_a_fresh_database_upgraded_one_revision_at_a_time_equals_the_models(board_db):
    """b0001, then b0002, then the store's own upgrade to head: the schema the revisions build is the
    models' (no autogenerate difference, types compared), on each backend."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from flowstudio.board.db import make_engine, upgrade
    from flowstudio.board.models import Base

    engine = make_engine(board_db)
    upgrade(engine, "b0001")
    upgrade(engine, "b0002")
    engine.dispose()
    store = BoardStore(board_db)
    with store.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": "board_alembic_version"}
        )
        diff = [d for d in compare_metadata(context, Base.metadata) if not _foreign_table(d)]
    store.close()
    assert diff == []
    assert db_rows(board_db, "select version_num from board_alembic_version") == [("b0003",)]


def _foreign_table(diff) -> bool:
    """A difference about a table that is not the board's (the job store's, in a shared database)."""
    table = diff[1] if diff[0] in ("remove_table", "add_table") else None
    return table is not None and not table.name.startswith("board_")


def test_several_servers_opening_one_fresh_database_at_once_all_start(board_db):
    """Three processes open one empty database at the same moment (three servers starting): each
    upgrade waits for the database's lock, so none fails on a table another has just created (before
    the lock, two of three failed: "table board_alembic_version already exists" on SQLite, a
    ``pg_type`` unique violation on PostgreSQL)."""
    found, exit_codes = open_at_once(BoardStore, board_db)
    assert found == [] and exit_codes == [0, 0, 0]
    assert db_rows(board_db, "select version_num from board_alembic_version") == [("b0003",)]


def _method_rows(db, name):
    return db_rows(db, "select id, description from board_methods where name = :name", name=name)


def test_two_first_submissions_of_one_new_method_make_one_row_and_no_error(board_db):
    """Two stores (two servers, or two requests) on one SQLite file create the same new method at once.

    A barrier holds each one right after its "does it exist?" check until both have seen "no", so
    both go on to insert: the order that used to end in an IntegrityError (a 500 on upload)."""
    db = board_db
    stores = [BoardStore(db), BoardStore(db)]
    both_checked = threading.Barrier(2, timeout=10)
    for store in stores:
        check = store.method

        def held_check(name, check=check, store=store):
            found = check(name)
            if not getattr(store, "_checked", False):  # only the first look (the check), not a re-read
                store._checked = True
                both_checked.wait()
            return found

        store.method = held_check
    results, errors = [None, None], []

    def create(i):
        try:
            results[i] = stores[i].ensure_method("fresh-method", description=f"card {i}", submitter=f"u{i}")
        except Exception as error:  # noqa: BLE001 - collected, asserted empty below
            errors.append(error)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [], f"a concurrent first submission raised {errors!r}"
    rows = _method_rows(db, "fresh-method")
    assert len(rows) == 1, f"one method row, got {rows}"
    assert results[0].id == results[1].id == rows[0][0], "both callers get the one row"
    assert results[0].description == results[1].description == rows[0][1], "the first card is kept"
    for store in stores:
        store.close()


def test_a_method_created_between_check_and_insert_is_returned(board_db):
    """The same race made deterministic: the row appears after this store's check said "no"."""
    db = board_db
    mine, other = BoardStore(db), BoardStore(db)
    first = other.ensure_method("raced", description="the other server's card")
    real_check, looks = mine.method, []

    def stale_check(name):
        looks.append(name)
        return None if len(looks) == 1 else real_check(name)  # the check ran before the other insert

    mine.method = stale_check
    got = mine.ensure_method("raced", description="my card")
    assert looks == ["raced", "raced"], "checked, then re-read after the refused insert"
    assert got.id == first.id and got.description == "the other server's card"
    assert _method_rows(db, "raced") == [(first.id, "the other server's card")]
    # a fresh name still inserts on the first try
    assert mine.ensure_method("brand-new").id != first.id and len(looks) == 3
    mine.close()
    other.close()


def test_aggregate_is_mean_and_population_std_per_scope():
    records = [
        {"status": "ok", "edit_type": "color", "metrics": {"m": 1.0}, "composite": {"value": 0.2}},
        {"status": "ok", "edit_type": "color", "metrics": {"m": 3.0}, "composite": {"value": 0.4}},
        {"status": "ok", "edit_type": "style", "metrics": {"m": 5.0, "x": float("inf")}},
        {"status": "error", "edit_type": "style", "metrics": {"m": 100.0}},
    ]
    stats = aggregate(records)
    assert stats["all"]["m"].mean == pytest.approx(3.0) and stats["all"]["m"].n == 3
    assert stats["all"]["m"].std == pytest.approx(np.std([1.0, 3.0, 5.0]))
    assert stats["color"]["composite"].mean == pytest.approx(0.3)
    assert "x" not in stats["style"], "a non-finite value is no number to average"
    assert stats["all"]["m"].ci95 == pytest.approx(1.96 * np.std([1.0, 3.0, 5.0]) / np.sqrt(3))


def test_seeded_numbers_are_the_results_files_numbers(runs, board_db):
    testset, files = runs
    store = BoardStore(board_db)
    store.sync_cases(testset)
    for file in files.values():
        seed_results(store, testset, file)
    seed_results(store, testset, files["identity"])  # seeding again replaces, never duplicates
    rows = store.leaderboard(testset.name)
    assert [r.method.name for r in rows] == ["ground-truth", "identity"]
    for row in rows:
        results = read_results(files[row.method.name])
        ok = [c for c in results["cases"] if c["status"] == "ok"]
        assert row.stats["composite"].mean == pytest.approx(_mean([c["composite"]["value"] for c in ok]))
        assert row.stats["composite"].mean == pytest.approx(results["composite"]["mean"])
        for name, entry in results["summary"].items():
            if "mean" in entry:
                assert row.stats[name].mean == pytest.approx(entry["mean"]), name
                assert row.stats[name].std == pytest.approx(entry["std"]), name
    color = {r.method.name: r for r in store.leaderboard(testset.name, "color")}
    truth = read_results(files["ground-truth"])
    gt_color = [c["metrics"]["gt_psnr"] for c in truth["cases"] if c["edit_type"] == "color"]
    assert color["ground-truth"].stats["gt_psnr"].mean == pytest.approx(_mean(gt_color))
    assert color["ground-truth"].stats["gt_psnr"].n == len(gt_color)
    store.close()


def test_a_run_folder_seeds_with_its_outputs_like_its_results_file(runs, tmp_path):
    """``board seed RUN_FOLDER`` keeps the folder's outputs for the case viewer, as its results.json
    does, and is the same submission (seeding the other path replaces it)."""
    testset, files = runs
    folder = files["identity"].parent
    assert (folder / "outputs").is_dir()
    store = BoardStore(tmp_path / "b.sqlite")
    store.sync_cases(testset)
    by_folder = seed_results(store, testset, folder)
    assert by_folder.outputs == str((folder / "outputs").resolve())
    by_file = seed_results(store, testset, files["identity"])
    assert by_file.id == by_folder.id and by_file.outputs == by_folder.outputs
    assert [r.method.name for r in store.leaderboard(testset.name)] == ["identity"]
    store.close()


def test_seed_refuses_a_run_on_another_build_of_the_set(runs, tmp_path):
    testset, files = runs
    other = tiny_set(tmp_path / "other-build")  # same name, same cases, another manifest
    data = json.loads(other.path.read_text())
    data["description"] = "another build"
    other.path.write_text(json.dumps(data))
    from flowstudio.bench.manifest import load_testset

    other = load_testset(other.path)
    store = BoardStore(tmp_path / "b.sqlite")
    store.sync_cases(other)
    with pytest.raises(InputError, match="another build of shapeworld-v1"):
        seed_results(store, other, files["identity"])
    assert store.leaderboard(other.name) == []
    store.close()


def test_board_page_and_json_agree(client, runs):
    testset, files = runs
    page = client.get("/board")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    data = client.get("/api/board").json()
    assert [r["method"] for r in data["rows"]] == ["ground-truth", "identity"]
    assert data["scopes"] == ["all", "background", "color", "material", "product", "style"]
    for row in data["rows"]:
        assert f'data-submission="{row["id"]}"' in page.text
        assert f'data-v="{row["composite"]["mean"]}"' in page.text  # the sortable cell holds the number
    assert 'class="sortable"' in page.text and "addEventListener" in page.text
    shown = {m["name"] for m in data["metrics"]}
    assert {"gt_psnr", "warp_error", "attr_acc"} <= shown
    assert "clip_text" not in shown, "a reference metric no row has is not a column"


def test_edit_type_tab(client):
    data = client.get("/api/board", params={"edit_type": "style"}).json()
    assert data["scope"] == "style" and data["cases"] == 1
    assert all(r["composite"]["n"] == 1 for r in data["rows"])
    assert client.get("/board", params={"edit_type": "style"}).status_code == 200
    bad = client.get("/api/board", params={"edit_type": "nonsense"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_parameters"


def test_method_card(client):
    card = client.get("/api/methods/identity").json()
    assert card["submitter"] == "flowstudio" and card["code"] == "flowstudio/bench/methods.py"
    assert card["submissions"][0]["settings"]["method"] == "identity"
    page = client.get("/methods/identity")
    assert page.status_code == 200 and "no-edit lower bound" in page.text
    assert client.get("/api/methods/nope").status_code == 404


def test_case_viewer_shows_strips_and_the_case_metrics(client, runs):
    testset, files = runs
    case = testset.cases[1]
    view = client.get(f"/api/cases/{case.id}").json()
    truth = next(c for c in read_results(files["ground-truth"])["cases"] if c["id"] == case.id)
    got = next(r for r in view["results"] if r["method"] == "ground-truth")
    assert got["metrics"] == pytest.approx(truth["metrics"])
    page = client.get(f"/cases/{case.id}")
    for kind in ("source", "target", "mask"):
        assert f"/media/cases/{case.id}/{kind}.png" in page.text
    strip = client.get(f"/media/cases/{case.id}/source.png")
    assert strip.status_code == 200 and strip.headers["content-type"] == "image/png"
    from io import BytesIO

    from PIL import Image

    image = np.asarray(Image.open(BytesIO(strip.content)))
    source = case.load_source()
    assert image.shape == (64, 5 * 64 + 4 * 2, 3)
    assert np.array_equal(image[:, :64], source[0]) and np.array_equal(image[:, -64:], source[-1])
    assert client.get(f"/media/cases/{case.id}/bogus.png").status_code == 404
    assert client.get("/api/cases/nope").status_code == 404


def test_cli_seed_and_help(runs, tmp_path):
    from typer.testing import CliRunner

    from flowstudio.cli import app

    testset, files = runs
    db = tmp_path / "cli.sqlite"
    runner = CliRunner()
    result = runner.invoke(
        app, ["board", "seed", str(files["identity"]), "--testset", str(testset.path), "--db", str(db)]
    )
    assert result.exit_code == 0, result.output
    assert "5 cases" in result.output
    store = BoardStore(db)
    assert [r.method.name for r in store.leaderboard(testset.name)] == ["identity"]
    store.close()
    bad = runner.invoke(
        app, ["board", "seed", str(tmp_path / "none.json"), "--testset", str(testset.path), "--db", str(db)]
    )
    assert bad.exit_code == 2 and "no results file" in bad.output
    assert runner.invoke(app, ["board", "serve", "--help"]).exit_code == 0


def test_seed_without_files_lists_a_run_committed_twice_once(runs, tmp_path, monkeypatch):
    """Found results files with the same method, set build and numbers (a benchmark anchor and the
    board's seed of one run) give one row; the second is skipped with its twin named."""
    import shutil

    from typer.testing import CliRunner

    from flowstudio.board import seed
    from flowstudio.cli import app

    testset, files = runs
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Path(shutil.copy(files["identity"], tmp_path / "a" / "anchor_identity.json"))
    second = Path(shutil.copy(files["identity"], tmp_path / "b" / "seed_identity.json"))
    found = [first, second, files["ground-truth"]]
    monkeypatch.setattr(seed, "default_files", lambda: found)
    db = tmp_path / "twice.sqlite"
    result = CliRunner().invoke(app, ["board", "seed", "--testset", str(testset.path), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert f"skipped {second}: the same run as {first}" in result.output
    store = BoardStore(db)
    names = [r.method.name for r in store.leaderboard(testset.name)]
    store.close()
    assert sorted(names) == ["ground-truth", "identity"], names
    identity = read_results(files["identity"])
    assert seed.run_fingerprint(identity) == seed.run_fingerprint(read_results(second))
    assert seed.run_fingerprint(identity) != seed.run_fingerprint(read_results(files["ground-truth"]))


def test_a_subset_run_is_listed_unranked_after_full_runs(runs, tmp_path):
    from flowstudio.bench.manifest import TestSet

    testset, files = runs
    subset = TestSet(testset.path, testset.name, testset.cases[:2], testset.data)
    partial = bench_run(subset, "ground-truth", tmp_path / "partial")
    app = create_app(tmp_path / "s.sqlite", testset, tmp_path / "data", start_worker=False)
    seed_results(app.state.board.store, testset, partial)
    seed_results(app.state.board.store, testset, files["identity"])
    with TestClient(app) as client:
        rows = client.get("/api/board").json()["rows"]
        assert [(r["method"], r["rank"], r["complete"]) for r in rows] == [
            ("identity", 1, True),
            ("ground-truth", None, False),
        ], "a better mean over 2 of 5 cases must not outrank a full run"
        assert rows[1]["cases_scored"] == 2 and rows[1]["cases_total"] == 5
        assert "subset" in client.get("/board").text


def test_a_one_type_run_is_ranked_in_its_type_tab_and_unranked_in_all(runs, tmp_path):
    from flowstudio.board.seed import run_and_seed

    testset, files = runs
    app = create_app(tmp_path / "t.sqlite", testset, tmp_path / "data", start_worker=False)
    store = app.state.board.store
    seed_results(store, testset, files["identity"])
    sub = run_and_seed(store, testset, "ground-truth", tmp_path / "color-only", edit_types=["color"])
    assert sub.cases_scored == 1, "the 5-case set holds one colour case"
    settings = json.loads(sub.settings)
    assert settings["edit_types"] == ["color"], "the run records its filter"
    with TestClient(app) as client:
        everything = client.get("/api/board").json()["rows"]
        assert [(r["method"], r["rank"]) for r in everything] == [("identity", 1), ("ground-truth", None)]
        color = client.get("/api/board", params={"edit_type": "color"}).json()["rows"]
        assert [(r["method"], r["rank"], r["complete"]) for r in color] == [
            ("ground-truth", 1, True),
            ("identity", 2, True),
        ], "the colour-only run covers every colour case: ranked there, above doing nothing"
        style = client.get("/api/board", params={"edit_type": "style"}).json()["rows"]
        assert [r["method"] for r in style] == ["identity"], "no style row for a colour-only run"


def test_an_edit_type_the_set_does_not_hold_is_refused_naming_the_held_ones(runs):
    from flowstudio.bench.sets import only_edit_types

    testset, _ = runs
    with pytest.raises(InputError, match=r"'colour' not in test set .* it holds: background, color"):
        only_edit_types(testset, ["colour"])
    assert [c.edit_type for c in only_edit_types(testset, ["style", "product"]).cases] == ["product", "style"]
