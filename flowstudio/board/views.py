"""The board's data as plain dicts: the JSON endpoints return them, the HTML templates render them,
so a page and its JSON never disagree."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from flowstudio.board.aggregate import ALL, COMPOSITE
from flowstudio.board.context import Board
from flowstudio.board.models import Method, Score, Submission
from flowstudio.board.store import on_board
from flowstudio.metrics.registry import for_suite


def _date(stamp: float | None) -> str | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _stat(score: Score | None) -> dict[str, Any] | None:
    if score is None:
        return None
    ci = 1.96 * score.std / math.sqrt(score.n) if score.n else None
    return {"mean": score.mean, "std": score.std, "n": score.n, "ci95": ci}


def metric_columns(names: set[str]) -> list[dict[str, Any]]:
    """Declarations of the editing metrics in ``names``, in the registry's order."""
    return [
        {
            "name": m.name,
            "higher_is_better": m.higher_is_better,
            "unit": m.unit,
            "tier": m.tier,
            "description": m.description,
        }
        for m in for_suite("edit")
        if m.level == "case" and m.name in names
    ]


def scopes(board: Board) -> list[str]:
    return [ALL, *sorted({c.edit_type for c in board.store.cases(board.testset.name)})]


def submission_summary(submission: Submission, method: Method) -> dict[str, Any]:
    return {
        "id": submission.id,
        "method": method.name,
        "status": submission.status,
        "origin": submission.origin,
        "submitter": submission.owner or method.submitter,
        "date": _date(submission.finished_at or submission.created_at),
        "created": _date(submission.created_at),
        "composite": submission.composite,
        "cases_scored": submission.cases_scored,
        "cases_total": submission.cases_total,
        "errors": submission.errors,
        "error": submission.error,
        "note": submission.note,
        "settings": json.loads(submission.settings or "{}"),
        "metric_versions": json.loads(submission.metric_versions) if submission.metric_versions else None,
        "has_outputs": submission.outputs is not None,
    }


def complete(submission: Submission) -> bool:
    """Whether the submission covers every case of the set (uploads always do; a seeded ``--limit``
    run does not, and is listed below the ranked rows, unranked: its mean is over other cases)."""
    return submission.cases_scored + submission.errors >= submission.cases_total


def _done_cases(board: Board, submission: Submission) -> set[str]:
    """The cases ``submission`` has a result for (scored or failed)."""
    return {r.case_id for r in board.store.case_results(submission_id=submission.id)}


def leaderboard(board: Board, scope: str = ALL) -> dict[str, Any]:
    rows = board.store.leaderboard(board.testset.name, scope)
    scope_cases = board.store.cases(board.testset.name, None if scope == ALL else scope)
    if scope == ALL:
        is_complete = {r.submission.id: complete(r.submission) for r in rows}
    else:
        # a run of some edit types only (``board seed --run ... --edit-type color``) is complete, and
        # ranked, in the tab of a type it covers whole, and absent from the tabs of types it never ran
        ids = {c.case_id for c in scope_cases}
        is_complete, kept = {}, []
        for r in rows:
            if complete(r.submission):
                is_complete[r.submission.id] = True
            else:
                done = _done_cases(board, r.submission)
                if done and not done & ids:
                    continue  # results, none of this type: another type's run
                is_complete[r.submission.id] = ids <= done
            kept.append(r)
        rows = kept
    rows = [r for r in rows if is_complete[r.submission.id]] + [
        r for r in rows if not is_complete[r.submission.id]
    ]
    ranked = sum(is_complete.values())
    names = {n for r in rows for n in r.stats if n != COMPOSITE}
    return {
        "testset": board.testset.name,
        "scope": scope,
        "scopes": scopes(board),
        "cases": len(scope_cases),
        "metrics": metric_columns(names),
        "rows": [
            {
                "rank": i + 1 if i < ranked else None,
                "complete": i < ranked,
                **submission_summary(r.submission, r.method),
                "paper": r.method.paper,
                "code": r.method.code,
                "composite": _stat(r.stats.get(COMPOSITE)),
                "metrics": {n: _stat(s) for n, s in r.stats.items() if n != COMPOSITE},
            }
            for i, r in enumerate(rows)
        ],
    }


def method_card(board: Board, method: Method) -> dict[str, Any]:
    return {
        "name": method.name,
        "description": method.description,
        "paper": method.paper,
        "code": method.code,
        "submitter": method.submitter,
        "created": _date(method.created_at),
        "submissions": [
            submission_summary(s, method)
            for s in board.store.submissions(method_id=method.id)
            if s.status != "withdrawn"
        ],
    }


def submission_detail(board: Board, submission: Submission) -> dict[str, Any]:
    method = board.store.method_by_id(submission.method_id)
    assert method is not None  # a foreign key
    scores: dict[str, dict[str, Any]] = {}
    for score in board.store.scores(submission.id):
        scores.setdefault(score.scope, {})[score.metric] = _stat(score)
    cases = {c.case_id: c for c in board.store.cases(board.testset.name)}
    return {
        **submission_summary(submission, method),
        "scores": scores,
        "cases": [
            {
                "id": r.case_id,
                "edit_type": cases[r.case_id].edit_type if r.case_id in cases else None,
                "status": r.status,
                "composite": r.composite,
                "error": r.error,
            }
            for r in sorted(board.store.case_results(submission_id=submission.id), key=lambda r: r.case_id)
        ],
    }


def case_view(board: Board, case_id: str) -> dict[str, Any] | None:
    case = board.store.case(board.testset.name, case_id)
    if case is None:
        return None
    results = []
    for r in board.store.case_results(case_id=case_id):
        submission = board.store.submission(r.submission_id)
        if submission is None or not on_board(submission) or submission.testset != board.testset.name:
            continue
        method = board.store.method_by_id(submission.method_id)
        results.append(
            {
                "submission": submission.id,
                "method": method.name if method else None,
                "status": r.status,
                "composite": r.composite,
                "metrics": json.loads(r.metrics),
                "skipped": json.loads(r.skipped),
                "error": r.error,
                "has_output": submission.outputs is not None,
            }
        )
    results.sort(key=lambda x: -(x["composite"] if x["composite"] is not None else -1.0))
    names = {n for x in results for n in x["metrics"]}
    full = board.testset.by_id(case_id)
    return {
        "id": case.case_id,
        "testset": case.testset,
        "edit_type": case.edit_type,
        "source_prompt": case.source_prompt,
        "target_prompt": case.target_prompt,
        "instruction": case.instruction,
        "frames": case.frames,
        "height": case.height,
        "width": case.width,
        "has_target": full.target is not None,
        "has_mask": full.mask is not None,
        "metrics": metric_columns(names),
        "results": results,
    }
