"""Arena: pairwise human votes on the board's outputs, and the ratings computed from them.

A rater (``--rater-tokens``) asks for a ballot and gets two outputs of the same case, the methods
hidden and the sides in random order, drawn by :func:`flowstudio.bench.ratings.sample_pair` (weight
``1 / (1 + votes so far)``: under-voted pairs come up more often; never a pair this rater voted on).
With probability ``check_rate`` the ballot is an attention check instead: the case's ground truth
against a corrupted copy (frames reversed, heavy noise, washed out). The vote names the ballot, not
the methods; the answer reveals them. One vote per (case, pair, rater) is a unique constraint in
the database; ``daily_cap`` votes per rater per UTC day.

Ratings (:func:`ratings`) use :mod:`flowstudio.bench.ratings`: Bradley-Terry scores (weak prior: one
virtual game per compared pair, half a win each way) with Bayesian-bootstrap 95% intervals and rank
upper bounds (a method in fewer than ``MIN_VOTES`` votes is listed as "too few votes", unranked),
Krippendorff's alpha, per-rater consensus agreement, and the rank agreement of the composite with
people. Raters flagged by attention checks (at least ``CHECK_MIN_FAILS`` failed and more than
``CHECK_MAX_FAIL_SHARE`` of their checks) or by the consensus test are left out of the ratings, and
listed.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from flowstudio.bench import ratings as stats
from flowstudio.board.context import Board
from flowstudio.board.models import ArenaVote, Ballot, Method, Submission
from flowstudio.board.store import on_board
from flowstudio.serve.errors import ApiError

CHECK_MIN_FAILS = 2
CHECK_MAX_FAIL_SHARE = 0.25
GROUND_TRUTH, CORRUPTED = "ground-truth", "corrupted"
#: A ballot not voted on within this many seconds is abandoned: its pair may be offered again.
OPEN_BALLOT_SECONDS = 600.0


@dataclass
class ArenaSettings:
    daily_cap: int = 200  # votes per rater per UTC day
    check_rate: float = 0.1  # share of ballots that are attention checks
    rounds: int = 500  # bootstrap rounds of the ratings page
    seed: int | None = None  # of the sampler (tests); None: fresh entropy
    rng: np.random.Generator = field(init=False)
    lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)


def _unit(case_id: str, a: str, b: str) -> tuple[str, str, str]:
    return (case_id, *sorted((a, b)))  # type: ignore[return-value]


def pair_key(a: str, b: str) -> str:
    return "|".join(sorted((a, b)))


def entrants(board: Board) -> dict[str, Submission]:
    """Per method, its newest submission on the board whose outputs are kept (what can be shown)."""
    with board.store.sessions() as session:
        rows = session.execute(
            select(Submission, Method)
            .join(Method, Method.id == Submission.method_id)
            .where(Submission.testset == board.testset.name, Submission.outputs.is_not(None))
            .order_by(Submission.created_at)
        ).all()
    found: dict[str, Submission] = {}
    for submission, method in rows:
        if on_board(submission) and Path(str(submission.outputs)).is_dir():
            found[method.name] = submission
    return found


def _today() -> float:
    now = datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp()


def votes_today(board: Board, rater: str) -> int:
    """Pair votes and Likert ratings ``rater`` gave since UTC midnight (the daily cap counts both)."""
    from flowstudio.board.models import LikertRating

    total = 0
    with board.store.sessions() as session:
        for table in (ArenaVote, LikertRating):
            total += (
                session.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(table.rater == rater, table.created_at >= _today())
                )
                or 0
            )
    return total


def check_cap(board: Board, settings: ArenaSettings, rater: str) -> None:
    done = votes_today(board, rater)
    if done >= settings.daily_cap:
        raise ApiError(
            429,
            "daily_cap",
            f"you have cast {done} votes today, the daily cap is {settings.daily_cap}: "
            "come back tomorrow (UTC)",
            headers={"Retry-After": str(int(_today() + 86400 - time.time()))},
        )


def issue_ballot(board: Board, settings: ArenaSettings, rater: str) -> Ballot:
    """A new ballot for ``rater``: an attention check or an under-voted pair they have not voted on."""
    check_cap(board, settings, rater)
    testset = board.testset.name
    cases = [c.case_id for c in board.store.cases(testset)]
    with settings.lock:  # numpy generators are not thread-safe
        check = settings.rng.random() < settings.check_rate
        if check:
            with_truth = [c for c in cases if board.testset.by_id(c).target is not None]
            if with_truth:
                case_id = with_truth[int(settings.rng.integers(len(with_truth)))]
                sides = (
                    (GROUND_TRUTH, CORRUPTED) if settings.rng.random() < 0.5 else (CORRUPTED, GROUND_TRUTH)
                )
                return store_ballot(board, rater, case_id, "check", sides, (None, None))
        shown = entrants(board)
        if len(shown) < 2:
            raise ApiError(
                409,
                "arena_empty",
                "fewer than two methods on the board have their outputs kept: nothing to compare",
            )
        names = sorted(shown)
        pairs = [(c, a, b) for c in cases for a, b in itertools.combinations(names, 2)]
        counts, seen = _vote_counts(board, rater)
        picked = stats.sample_pair(pairs, counts, settings.rng, seen=seen)
    if picked is None:
        raise ApiError(
            409,
            "all_voted",
            "you have voted on every pair of every case (or hold an open ballot for the rest): thank you",
        )
    case_id, left, right = picked
    return store_ballot(board, rater, case_id, "pair", (left, right), (shown[left].id, shown[right].id))


def _vote_counts(
    board: Board, rater: str
) -> tuple[dict[tuple[str, str, str], int], list[tuple[str, str, str]]]:
    with board.store.sessions() as session:
        rows = session.execute(
            select(ArenaVote.case_id, ArenaVote.pair, ArenaVote.rater).where(
                ArenaVote.testset == board.testset.name, ArenaVote.kind == "pair"
            )
        ).all()
        # this rater's ballots still open (issued lately, not voted): not offered again meanwhile,
        # or two tabs (or a double click) would get the same pair and the second vote would be refused
        open_ballots = session.execute(
            select(Ballot.case_id, Ballot.left_method, Ballot.right_method).where(
                Ballot.rater == rater,
                Ballot.kind == "pair",
                Ballot.testset == board.testset.name,
                Ballot.issued_at > time.time() - OPEN_BALLOT_SECONDS,
                Ballot.id.not_in(select(ArenaVote.ballot_id)),
            )
        ).all()
    counts: dict[tuple[str, str, str], int] = {}
    seen = [_unit(c, a, b) for c, a, b in open_ballots]
    for case_id, pair, who in rows:
        unit = (case_id, *pair.split("|"))
        counts[unit] = counts.get(unit, 0) + 1  # type: ignore[index]
        if who == rater:
            seen.append(unit)
    return counts, seen  # type: ignore[return-value]


def store_ballot(
    board: Board,
    rater: str,
    case_id: str,
    kind: str,
    methods: tuple[str, str],
    subs: tuple[str | None, str | None],
) -> Ballot:
    ballot = Ballot(
        id=uuid.uuid4().hex,
        rater=rater,
        testset=board.testset.name,
        case_id=case_id,
        kind=kind,
        left_method=methods[0],
        right_method=methods[1],
        left_submission=subs[0],
        right_submission=subs[1],
        issued_at=time.time(),
    )
    with board.store.sessions() as session, session.begin():
        session.add(ballot)
    return ballot


def ballot(board: Board, ballot_id: str) -> Ballot | None:
    with board.store.sessions() as session:
        return session.get(Ballot, ballot_id)


def cast_vote(board: Board, settings: ArenaSettings, rater: str, ballot_id: str, vote: str) -> dict[str, Any]:
    """Record ``rater``'s ``vote`` on their ballot; returns the revealed methods."""
    if vote not in stats.VOTES:
        raise ApiError(
            422,
            "invalid_vote",
            f"vote must be one of {', '.join(stats.VOTES)}, got {vote!r}",
            [{"field": "vote", "message": "unknown vote"}],
        )
    found = ballot(board, ballot_id)
    if found is None or found.rater != rater:
        raise ApiError(404, "not_found", f"no ballot {ballot_id!r} of yours")
    check_cap(board, settings, rater)
    check = found.kind == "check"
    truth_side = "left" if found.left_method == GROUND_TRUTH else "right"
    record = ArenaVote(
        ballot_id=found.id,
        rater=rater,
        testset=found.testset,
        case_id=found.case_id,
        pair=f"check:{found.id}" if check else pair_key(found.left_method, found.right_method),
        kind=found.kind,
        left_method=found.left_method,
        right_method=found.right_method,
        vote=vote,
        passed=(vote == truth_side) if check else None,
        created_at=time.time(),
    )
    try:
        with board.store.sessions() as session, session.begin():
            session.add(record)
    except IntegrityError as error:
        raise ApiError(409, "already_voted", "you have already voted on this ballot or this pair") from error
    return {
        "ballot": found.id,
        "vote": vote,
        "kind": found.kind,
        "left": found.left_method,
        "right": found.right_method,
    }


def corrupt(frames: np.ndarray, key: str) -> np.ndarray:
    """An obviously worse copy of a clip (attention checks): reversed, noisy, washed out."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
    noisy = frames[::-1].astype(np.float32) * 0.5 + 64 + rng.normal(0, 40, frames.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


# -- ratings --------------------------------------------------------------------------------------


def _all_votes(board: Board) -> list[ArenaVote]:
    with board.store.sessions() as session:
        return list(
            session.scalars(
                select(ArenaVote).where(ArenaVote.testset == board.testset.name).order_by(ArenaVote.id)
            )
        )


def export_votes(board: Board) -> list[stats.Vote]:
    """Every pair vote (attention checks left out), as :class:`flowstudio.bench.ratings.Vote`."""
    return [
        stats.Vote(v.case_id, v.left_method, v.right_method, v.vote, v.rater)
        for v in _all_votes(board)
        if v.kind == "pair"
    ]


def ratings(board: Board, settings: ArenaSettings) -> dict[str, Any]:
    """The ratings page's data (see the module doc)."""
    rows = _all_votes(board)
    checks: dict[str, dict[str, int]] = {}
    for v in rows:
        if v.kind == "check":
            entry = checks.setdefault(v.rater, {"checks": 0, "failed": 0})
            entry["checks"] += 1
            entry["failed"] += not v.passed
    votes = export_votes(board)
    methods = sorted({v.left for v in votes} | {v.right for v in votes})
    consensus = stats.flag_raters(votes, methods) if len(methods) >= 2 else {}
    raters = sorted({v.rater for v in rows})
    rater_rows = []
    excluded = set()
    for name in raters:
        c = checks.get(name, {"checks": 0, "failed": 0})
        by_checks = c["failed"] >= CHECK_MIN_FAILS and c["failed"] > CHECK_MAX_FAIL_SHARE * c["checks"]
        by_consensus = bool(consensus.get(name, {}).get("flagged"))
        if by_checks or by_consensus:
            excluded.add(name)
        rater_rows.append(
            {
                "rater": name,
                "votes": sum(v.rater == name for v in votes),
                **c,
                "consensus": consensus.get(name),
                "flagged_by_checks": by_checks,
                "flagged_by_consensus": by_consensus,
            }
        )
    kept = [v for v in votes if v.rater not in excluded]
    kept_methods = sorted({v.left for v in kept} | {v.right for v in kept})
    out: dict[str, Any] = {
        "testset": board.testset.name,
        "votes": len(votes),
        "votes_used": len(kept),
        "checks": sum(c["checks"] for c in checks.values()),
        "raters": rater_rows,
        "methods": [],
        "alpha": stats.krippendorff_alpha(kept) if kept else None,
        "rounds": settings.rounds,
        "min_votes": stats.MIN_VOTES,
        "agreement": None,
        "agreement_skipped": None,
    }
    if not kept:
        out["agreement_skipped"] = "no votes yet"
        return _plain(out)
    table = stats.ratings_table(kept, kept_methods, rounds=settings.rounds, seed=0, min_votes=stats.MIN_VOTES)
    counts = stats.summary(kept, kept_methods)
    shown = entrants(board)
    for i in np.argsort(-table["theta"]):
        name = kept_methods[i]
        out["methods"].append(
            {
                "method": name,
                "theta": float(table["theta"][i]),
                "elo": float(stats.elo(table["theta"][i])),
                "lower": _f(table["lower"][i]),
                "upper": _f(table["upper"][i]),
                # too few votes: no rank (the page says so) rather than a rank the votes cannot back
                "rank": int(table["rank"][i]) if table["ranked"][i] else None,
                "rank_upper_bound": int(table["rank_upper_bound"][i]) if table["ranked"][i] else None,
                **counts[name],
                "composite": shown[name].composite if name in shown else None,
            }
        )
    composite = {m["method"]: m["composite"] for m in out["methods"] if m["composite"] is not None}
    if len(composite) >= 3:
        agreement = stats.rank_agreement(composite, kept, rounds=settings.rounds)
        out["agreement"] = {k: v for k, v in agreement.items() if k != "methods"} | {
            "methods": agreement["methods"]
        }
    else:
        out["agreement_skipped"] = f"needs 3 or more rated methods with a composite, has {len(composite)}"
    return _plain(out)


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists (JSON-ready)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _f(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
