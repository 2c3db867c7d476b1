"""Likert ratings: one output of one case (the method hidden), rated 1-5 on four dimensions.

Dimensions (:data:`DIMENSIONS`): edit accuracy (did the asked edit happen), preservation (is the rest
of the clip kept), temporal quality (no flicker or jumps), overall. Outputs are drawn with weight
``1 / (1 + ratings so far)`` over (case, method) units, never one the rater rated or holds an open
ballot for; one rating per (case, method, rater) is a unique constraint; the arena's daily cap counts
ratings and pair votes together.

Summary (:func:`summary`): per method and dimension the mean, spread and 95% half-width over
ratings; per dimension Krippendorff's alpha (ordinal) over the units two or more raters rated
(:func:`flowstudio.bench.ratings.alpha_of`); the CSV (``case_id,method,rating`` with ``rating`` the
overall score, the other dimensions and the rater as extra columns) is the Likert form that
``flowstudio bench fit-weights`` reads.
"""

from __future__ import annotations

import csv
import io
import math
import time
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from flowstudio.bench import ratings as stats
from flowstudio.board.arena import (
    OPEN_BALLOT_SECONDS,
    ArenaSettings,
    ballot,
    check_cap,
    entrants,
    store_ballot,
)
from flowstudio.board.context import Board
from flowstudio.board.models import Ballot, LikertRating
from flowstudio.serve.errors import ApiError

DIMENSIONS = ("edit_accuracy", "preservation", "temporal", "overall")
SCALE = (1, 5)


def issue(board: Board, settings: ArenaSettings, rater: str) -> Ballot:
    """A ``likert`` ballot: one kept output of one case, the least-rated unit this rater has not rated."""
    check_cap(board, settings, rater)
    shown = entrants(board)
    if not shown:
        raise ApiError(409, "arena_empty", "no method on the board has its outputs kept: nothing to rate")
    cases = [c.case_id for c in board.store.cases(board.testset.name)]
    counts, seen = _counts(board, rater)
    units = [(c, m) for c in cases for m in sorted(shown) if (c, m) not in seen]
    if not units:
        raise ApiError(409, "all_rated", "you have rated every output of every case: thank you")
    weight = np.array([1.0 / (1 + counts.get(u, 0)) for u in units])
    with settings.lock:
        case_id, method = units[int(settings.rng.choice(len(units), p=weight / weight.sum()))]
    return store_ballot(board, rater, case_id, "likert", (method, ""), (shown[method].id, None))


def _counts(board: Board, rater: str) -> tuple[dict[tuple[str, str], int], set[tuple[str, str]]]:
    with board.store.sessions() as session:
        rows = session.execute(
            select(LikertRating.case_id, LikertRating.method, LikertRating.rater).where(
                LikertRating.testset == board.testset.name
            )
        ).all()
        pending = session.execute(
            select(Ballot.case_id, Ballot.left_method).where(
                Ballot.rater == rater,
                Ballot.kind == "likert",
                Ballot.testset == board.testset.name,
                Ballot.issued_at > time.time() - OPEN_BALLOT_SECONDS,
                Ballot.id.not_in(select(LikertRating.ballot_id)),
            )
        ).all()
    counts: dict[tuple[str, str], int] = {}
    seen = {(c, m) for c, m in pending}
    for case_id, method, who in rows:
        counts[(case_id, method)] = counts.get((case_id, method), 0) + 1
        if who == rater:
            seen.add((case_id, method))
    return counts, seen


def rate(board: Board, settings: ArenaSettings, rater: str, ballot_id: str, scores: Any) -> dict[str, Any]:
    """Store ``rater``'s 1-5 scores on their ``likert`` ballot; every bad field named in one 422."""
    problems = []
    if not isinstance(scores, dict):
        scores = {}
        problems.append({"field": "ratings", "message": "must be an object of the four dimensions"})
    for name in DIMENSIONS:
        value = scores.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not SCALE[0] <= value <= SCALE[1]:
            problems.append(
                {"field": f"ratings.{name}", "message": f"an integer {SCALE[0]}-{SCALE[1]}, got {value!r}"}
            )
    for name in set(scores) - set(DIMENSIONS):
        problems.append(
            {"field": f"ratings.{name}", "message": f"unknown dimension (known: {', '.join(DIMENSIONS)})"}
        )
    if problems:
        raise ApiError(422, "invalid_rating", f"{len(problems)} problem(s) in the ratings", problems)
    found = ballot(board, ballot_id)
    if found is None or found.rater != rater or found.kind != "likert":
        raise ApiError(404, "not_found", f"no rating ballot {ballot_id!r} of yours")
    check_cap(board, settings, rater)
    record = LikertRating(
        ballot_id=found.id,
        rater=rater,
        testset=found.testset,
        case_id=found.case_id,
        method=found.left_method,
        created_at=time.time(),
        **{name: int(scores[name]) for name in DIMENSIONS},
    )
    try:
        with board.store.sessions() as session, session.begin():
            session.add(record)
    except IntegrityError as error:
        raise ApiError(409, "already_rated", "you have already rated this output") from error
    return {
        "ballot": found.id,
        "method": found.left_method,
        "ratings": {n: int(scores[n]) for n in DIMENSIONS},
    }


def _rows(board: Board) -> list[LikertRating]:
    with board.store.sessions() as session:
        return list(
            session.scalars(
                select(LikertRating)
                .where(LikertRating.testset == board.testset.name)
                .order_by(LikertRating.id)
            )
        )


def _alpha(rows: list[LikertRating], name: str) -> float | None:
    units: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        units.setdefault((r.case_id, r.method), {})[r.rater] = getattr(r, name)
    shared = [u for u in units.values() if len(u) >= 2]
    if len(shared) < 2:
        return None
    raters = sorted({who for u in shared for who in u})
    data = np.full((len(raters), len(shared)), np.nan)
    for j, unit in enumerate(shared):
        for who, value in unit.items():
            data[raters.index(who), j] = value
    if len(np.unique(data[~np.isnan(data)])) < 2:
        return 1.0  # every rater gave one value everywhere: agreement without variation
    return stats.alpha_of(data, "ordinal")


def summary(board: Board) -> dict[str, Any]:
    rows = _rows(board)
    methods: dict[str, dict[str, Any]] = {}
    for method in sorted({r.method for r in rows}):
        mine = [r for r in rows if r.method == method]
        entry: dict[str, Any] = {"method": method, "ratings": len(mine)}
        for name in DIMENSIONS:
            values = np.array([getattr(r, name) for r in mine], float)
            std = float(values.std())
            entry[name] = {
                "mean": float(values.mean()),
                "std": std,
                "n": len(values),
                "ci95": 1.96 * std / math.sqrt(len(values)),
            }
        methods[method] = entry
    return {
        "ratings": len(rows),
        "dimensions": list(DIMENSIONS),
        "methods": sorted(methods.values(), key=lambda m: -m["overall"]["mean"]),
        "alpha": {name: _alpha(rows, name) for name in DIMENSIONS},
    }


def csv_text(board: Board) -> str:
    """The Likert CSV that ``bench fit-weights`` reads: ``case_id,method,rating`` (overall) + extras."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["case_id", "method", "rating", *DIMENSIONS[:-1], "rater"])
    for r in _rows(board):
        writer.writerow([r.case_id, r.method, r.overall, *(getattr(r, n) for n in DIMENSIONS[:-1]), r.rater])
    return out.getvalue()
