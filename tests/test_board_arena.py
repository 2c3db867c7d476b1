"""The arena: ballots hide the methods and randomise sides, one vote per pair and rater, a daily cap,
attention checks (ground truth vs a corrupted clip) that flag careless raters, and the ratings
(Bradley-Terry with intervals, agreement, composite vs people, CSV for fit-weights)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

from fastapi.testclient import TestClient  # noqa: E402

from flowstudio.bench import register_method  # noqa: E402
from flowstudio.board import arena  # noqa: E402
from flowstudio.board.app import create_app  # noqa: E402
from flowstudio.board.arena import ArenaSettings  # noqa: E402
from flowstudio.board.seed import seed_results  # noqa: E402
from flowstudio.serve.auth import Tokens  # noqa: E402
from tests.board_fixtures import bench_run, tiny_set  # noqa: E402

RATERS = {f"rater-{i}-token-0123456789": f"r{i}" for i in range(4)}
TOKEN = {name: token for token, name in RATERS.items()}
METHODS = ("ground-truth", "test-halfway", "identity")  # the composite ranks them in this order


class _Halfway:
    """test-halfway: the mean of the source and the ground truth (a half-done edit)."""

    settings = {"model": None, "steps": 0}

    def __call__(self, case, out_dir, seed):
        mixed = (case.load_source().astype(np.uint16) + case.load_target()) // 2
        return mixed.astype(np.uint8)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    register_method("test-halfway", _Halfway(), overwrite=True)
    root = tmp_path_factory.mktemp("arena")
    testset = tiny_set(root / "set")
    return testset, {m: bench_run(testset, m, root / "runs" / m) for m in METHODS}


def _client(runs, tmp_path, db=None, **settings):
    testset, files = runs
    app = create_app(
        db or tmp_path / "b.sqlite",
        testset,
        tmp_path / "data",
        start_worker=False,
        rater_tokens=Tokens(dict(RATERS)),
        arena=ArenaSettings(**{"seed": 0, "check_rate": 0.0, "rounds": 100, **settings}),
    )
    for file in files.values():
        seed_results(app.state.board.store, testset, file)
    return TestClient(app)


def _ballot(client, rater="r0"):
    return client.post("/api/arena/ballots", headers={"Authorization": f"Bearer {TOKEN[rater]}"})


def _vote(client, ballot_id, vote, rater="r0"):
    return client.post(
        "/api/arena/votes",
        json={"ballot": ballot_id, "vote": vote},
        headers={"Authorization": f"Bearer {TOKEN[rater]}"},
    )


def test_ballots_hide_methods_and_randomise_sides(runs, tmp_path):
    with _client(runs, tmp_path) as client:
        sides = set()
        for _ in range(12):
            response = _ballot(client)
            assert response.status_code == 200, response.text
            for name in METHODS:
                assert name not in response.text, "a ballot must not name its methods"
            body = response.json()
            found = arena.ballot(client.app.state.board, body["id"])
            sides.add((found.left_method, found.right_method))
            left = client.get(body["left"])
            assert left.status_code == 200 and left.headers["content-type"] == "image/png"
        assert any((b, a) in sides for a, b in sides), f"sides never swapped in 12 ballots: {sides}"


def test_vote_reveals_and_counts_once_per_pair_and_rater(runs, tmp_path, board_db):
    with _client(runs, tmp_path, board_db) as client:
        board = client.app.state.board
        first = _ballot(client).json()
        revealed = _vote(client, first["id"], "left").json()
        shown = arena.ballot(board, first["id"])
        assert (revealed["left"], revealed["right"]) == (shown.left_method, shown.right_method)
        assert _vote(client, first["id"], "right").status_code == 409
        # a second ballot on the very same pair (issued by hand): the database refuses the vote
        again = arena.store_ballot(
            board,
            "r0",
            shown.case_id,
            "pair",
            (shown.right_method, shown.left_method),
            (shown.right_submission, shown.left_submission),
        )
        response = _vote(client, again.id, "left")
        assert response.status_code == 409 and response.json()["error"]["code"] == "already_voted"
        assert _vote(client, first["id"], "left", rater="r1").status_code == 404, "another rater's ballot"
        assert _vote(client, _ballot(client).json()["id"], "sideways").status_code == 422


def test_every_pair_once_then_all_voted(runs, tmp_path):
    testset, _ = runs
    pairs = len(testset) * 3  # 3 methods: 3 pairs per case
    with _client(runs, tmp_path) as client:
        seen = set()
        for _ in range(pairs):
            body = _ballot(client).json()
            b = arena.ballot(client.app.state.board, body["id"])
            unit = (b.case_id, *sorted((b.left_method, b.right_method)))
            assert unit not in seen, "the sampler offered a pair this rater already voted on"
            seen.add(unit)
            assert _vote(client, body["id"], "tie").status_code == 200
        response = _ballot(client)
        assert response.status_code == 409 and response.json()["error"]["code"] == "all_voted"
        assert _ballot(client, "r1").status_code == 200, "another rater still has every pair to vote"


def test_under_voted_pairs_are_counted_for_the_sampler(runs, tmp_path):
    with _client(runs, tmp_path) as client:
        board = client.app.state.board
        body = _ballot(client).json()
        _vote(client, body["id"], "left")
        b = arena.ballot(board, body["id"])
        counts, seen = arena._vote_counts(board, "r1")
        unit = (b.case_id, *sorted((b.left_method, b.right_method)))
        assert counts == {unit: 1} and seen == []
        assert arena._vote_counts(board, "r0")[1] == [unit]
        # an open (unvoted) ballot's pair is not offered to the same rater again meanwhile
        pending = arena.ballot(board, _ballot(client, "r1").json()["id"])
        open_unit = (pending.case_id, *sorted((pending.left_method, pending.right_method)))
        assert arena._vote_counts(board, "r1")[1] == [open_unit]


def test_daily_cap(runs, tmp_path, board_db):
    with _client(runs, tmp_path, board_db, daily_cap=2) as client:
        for _ in range(2):
            assert _vote(client, _ballot(client).json()["id"], "left").status_code == 200
        capped = _ballot(client)
        assert capped.status_code == 429 and capped.json()["error"]["code"] == "daily_cap"
        assert _ballot(client, "r1").status_code == 200


def test_attention_checks_flag_a_careless_rater(runs, tmp_path):
    testset, _ = runs
    with _client(runs, tmp_path, check_rate=1.0) as client:
        board = client.app.state.board
        for rater, careful in (("r0", True), ("r1", False)):
            for _ in range(3):
                body = _ballot(client, rater).json()
                b = arena.ballot(board, body["id"])
                assert b.kind == "check" and {b.left_method, b.right_method} == {"ground-truth", "corrupted"}
                truth = "left" if b.left_method == "ground-truth" else "right"
                wrong = "right" if truth == "left" else "left"
                assert _vote(client, body["id"], truth if careful else wrong, rater).status_code == 200
        truth_strip = client.get(f"/media/cases/{b.case_id}/target.png").content
        pictures = {client.get(body[s]).content for s in ("left", "right")}
        assert truth_strip in pictures and len(pictures) == 2, "one side is the ground truth, one is not"
        raters = {r["rater"]: r for r in client.get("/api/ratings").json()["raters"]}
        assert raters["r0"]["failed"] == 0 and not raters["r0"]["flagged_by_checks"]
        assert raters["r1"]["failed"] == 3 and raters["r1"]["flagged_by_checks"]


def test_ratings_follow_the_votes_and_export_for_fit_weights(runs, tmp_path, board_db):
    """Raters who prefer the better-composite method most of the time: BT recovers the order."""
    rng = np.random.default_rng(1)
    rank = {m: i for i, m in enumerate(METHODS)}  # 0 = best
    with _client(runs, tmp_path, board_db) as client:
        board = client.app.state.board
        cast = 0
        for rater in ("r0", "r1", "r2"):
            while True:
                response = _ballot(client, rater)
                if response.status_code == 409:
                    break
                b = arena.ballot(board, response.json()["id"])
                better = "left" if rank[b.left_method] < rank[b.right_method] else "right"
                other = "right" if better == "left" else "left"
                choice = better if rng.random() < 0.85 else other
                assert _vote(client, b.id, choice, rater).status_code == 200
                cast += 1
        data = client.get("/api/ratings").json()
        assert data["votes"] == cast == 3 * 15
        assert [m["method"] for m in data["methods"]] == list(METHODS)
        for m in data["methods"]:
            assert m["lower"] <= m["theta"] <= m["upper"]
        assert data["agreement"]["spearman"] == pytest.approx(1.0)
        assert data["alpha"] is not None and data["alpha"] > 0, "raters who mostly agree: positive alpha"
        page = client.get("/ratings")
        assert page.status_code == 200 and 'data-method="ground-truth"' in page.text
        rows = list(csv.DictReader(io.StringIO(client.get("/api/ratings.csv").text)))
        assert len(rows) == cast and {"case_id", "method_a", "method_b", "winner"} <= set(rows[0])
        from flowstudio.bench.composite import read_ratings

        path = tmp_path / "votes.csv"
        path.write_text(client.get("/api/ratings.csv").text)
        assert read_ratings(path).kind == "pairwise"


def test_methods_with_too_few_votes_are_listed_unranked(runs, tmp_path):
    """Three votes: every method is under MIN_VOTES, so no rank is shown, and the intervals are wide."""
    with _client(runs, tmp_path) as client:
        board = client.app.state.board
        for _ in range(3):
            b = arena.ballot(board, _ballot(client).json()["id"])
            assert _vote(client, b.id, "left").status_code == 200
        data = client.get("/api/ratings").json()
        assert data["min_votes"] == 10 and len(data["methods"]) >= 2
        for m in data["methods"]:
            assert m["votes"] < data["min_votes"]
            assert m["rank"] is None and m["rank_upper_bound"] is None
            assert m["upper"] - m["lower"] > 1.0, f"{m['method']}: 3 votes must not give a narrow interval"
        page = client.get("/ratings").text
        assert page.count("too few votes</td>") == len(data["methods"])


def test_arena_closed_without_rater_tokens(runs, tmp_path):
    testset, _ = runs
    app = create_app(tmp_path / "c.sqlite", testset, tmp_path / "d", start_worker=False)
    with TestClient(app) as client:
        response = client.post("/api/arena/ballots")
        assert response.status_code == 403 and response.json()["error"]["code"] == "arena_closed"
        assert "closed" in client.get("/arena").text
    with _client(runs, tmp_path) as client:
        assert client.post("/api/arena/ballots").status_code == 401


def _likert(client, rater="r0"):
    return client.post("/api/arena/likert/ballots", headers={"Authorization": f"Bearer {TOKEN[rater]}"})


def _rate(client, ballot_id, ratings, rater="r0"):
    return client.post(
        "/api/arena/likert",
        json={"ballot": ballot_id, "ratings": ratings},
        headers={"Authorization": f"Bearer {TOKEN[rater]}"},
    )


def test_likert_ratings_per_dimension(runs, tmp_path, board_db):
    testset, _ = runs
    good = {"ground-truth": 5, "test-halfway": 3, "identity": 1}  # overall by method
    with _client(runs, tmp_path, board_db) as client:
        board = client.app.state.board
        response = _likert(client)
        assert response.status_code == 200
        for name in METHODS:
            assert name not in response.text, "a rating ballot must not name its method"
        body = response.json()
        assert client.get(body["output"]).status_code == 200
        bad = _rate(client, body["id"], {"edit_accuracy": 0, "preservation": "5", "overall": 6, "extra": 1})
        assert bad.status_code == 422
        fields = {p["field"] for p in bad.json()["error"]["problems"]}
        assert fields == {
            "ratings.edit_accuracy",
            "ratings.preservation",
            "ratings.temporal",
            "ratings.overall",
            "ratings.extra",
        }
        units = len(testset) * len(METHODS)
        for rater in ("r0", "r1"):
            if rater == "r1":
                body = _likert(client, rater).json()
            seen = set()
            for i in range(units):
                if i:
                    body = _likert(client, rater).json()
                found = arena.ballot(board, body["id"])
                assert (found.case_id, found.left_method) not in seen, "an output offered twice to one rater"
                seen.add((found.case_id, found.left_method))
                score = good[found.left_method]
                answer = _rate(
                    client,
                    body["id"],
                    {"edit_accuracy": score, "preservation": 4, "temporal": 4, "overall": score},
                    rater,
                )
                assert answer.status_code == 200 and answer.json()["method"] == found.left_method
            assert (
                _rate(
                    client,
                    body["id"],
                    {d: 3 for d in ("edit_accuracy", "preservation", "temporal", "overall")},
                    rater,
                ).status_code
                == 409
            )
            done = _likert(client, rater)
            assert done.status_code == 409 and done.json()["error"]["code"] == "all_rated"
        summary = client.get("/api/ratings").json()["likert"]
        assert summary["ratings"] == 2 * units
        assert [m["method"] for m in summary["methods"]] == list(METHODS)
        assert {m["method"]: m["overall"]["mean"] for m in summary["methods"]} == good
        assert summary["alpha"]["overall"] == pytest.approx(1.0), "two raters who agree exactly"
        rows = list(csv.DictReader(io.StringIO(client.get("/api/ratings/likert.csv").text)))
        assert len(rows) == 2 * units
        path = tmp_path / "likert.csv"
        path.write_text(client.get("/api/ratings/likert.csv").text)
        from flowstudio.bench.composite import read_ratings

        assert read_ratings(path).kind == "likert"
        assert 'id="likert"' in client.get("/ratings").text and client.get("/rate").status_code == 200
