"""JSON endpoints: the same data as the pages (:mod:`flowstudio.board.views`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from flowstudio.board import views
from flowstudio.board.aggregate import ALL
from flowstudio.board.context import Board, board_of
from flowstudio.serve.errors import ApiError

router = APIRouter(prefix="/api")


def check_scope(board: Board, scope: str) -> str:
    known = views.scopes(board)
    if scope not in known:
        raise ApiError(
            422,
            "invalid_parameters",
            f"edit_type must be one of {', '.join(known)}, got {scope!r}",
            [{"field": "edit_type", "message": "unknown edit type"}],
        )
    return scope


@router.get("/board")
def board_json(
    edit_type: str = Query(ALL, description="'all' or an edit type of the test set"),
    board: Board = Depends(board_of),
) -> dict[str, Any]:
    """The leaderboard of the served test set: one row per scored submission, best composite first."""
    return views.leaderboard(board, check_scope(board, edit_type))


@router.get("/methods/{name:path}")
def method_json(name: str, board: Board = Depends(board_of)) -> dict[str, Any]:
    method = board.store.method(name)
    if method is None:
        raise ApiError(404, "not_found", f"no method {name!r}")
    return views.method_card(board, method)


@router.get("/submissions/{submission_id}")
def submission_json(submission_id: str, board: Board = Depends(board_of)) -> dict[str, Any]:
    submission = board.store.submission(submission_id)
    if submission is None:
        raise ApiError(404, "not_found", f"no submission {submission_id!r}")
    return views.submission_detail(board, submission)


@router.get("/cases")
def cases_json(board: Board = Depends(board_of)) -> dict[str, Any]:
    cases = board.store.cases(board.testset.name)
    return {
        "testset": board.testset.name,
        "cases": [
            {
                "id": c.case_id,
                "edit_type": c.edit_type,
                "frames": c.frames,
                "height": c.height,
                "width": c.width,
            }
            for c in cases
        ],
    }


@router.get("/cases/{case_id}")
def case_json(case_id: str, board: Board = Depends(board_of)) -> dict[str, Any]:
    view = views.case_view(board, case_id)
    if view is None:
        raise ApiError(404, "not_found", f"no case {case_id!r} in {board.testset.name}")
    return view
