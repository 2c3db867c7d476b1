"""The arena's routes: ballots and votes for raters (``--rater-tokens``), the ratings page and its
JSON and CSV (the pairwise CSV ``flowstudio bench fit-weights`` reads)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials

from flowstudio.bench.ratings import write_pairwise_csv
from flowstudio.board import arena, likert
from flowstudio.board.auth import bearer
from flowstudio.board.context import Board, board_of
from flowstudio.board.media import cached_png
from flowstudio.serve.errors import ApiError

router = APIRouter()


def rater_of(
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer), board: Board = Depends(board_of)
) -> str:
    """The rater of the request's token: 403 when the board has no rater tokens, 401 without a known one."""
    if board.rater_tokens.open:
        raise ApiError(
            403, "arena_closed", "this board has no rater tokens (board serve --rater-tokens FILE)"
        )
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
    rater = board.rater_tokens.owner(header)
    if rater is None:
        raise ApiError(
            401,
            "unauthorized",
            "a rater token is needed: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return rater


def ballot_view(board: Board, ballot: Any) -> dict[str, Any]:
    case = board.store.case(ballot.testset, ballot.case_id)
    assert case is not None
    return {  # no method, no submission: the rater sees pictures only
        "id": ballot.id,
        "case": {
            "id": case.case_id,
            "edit_type": case.edit_type,
            "source_prompt": case.source_prompt,
            "target_prompt": case.target_prompt,
            "instruction": case.instruction,
        },
        "source": f"/media/cases/{case.case_id}/source.png",
        "left": f"/media/ballots/{ballot.id}/left.png",
        "right": f"/media/ballots/{ballot.id}/right.png",
        "votes_today": arena.votes_today(board, ballot.rater),
        "daily_cap": board.arena.daily_cap,
    }


@router.post("/api/arena/ballots")
def new_ballot(rater: str = Depends(rater_of), board: Board = Depends(board_of)) -> dict[str, Any]:
    """Two outputs of one case, names hidden, sides random (or an attention check)."""
    return ballot_view(board, arena.issue_ballot(board, board.arena, rater))


@router.post("/api/arena/votes")
def vote(
    ballot: str = Body(..., embed=True),
    choice: str = Body(..., embed=True, alias="vote"),
    rater: str = Depends(rater_of),
    board: Board = Depends(board_of),
) -> dict[str, Any]:
    """``{"ballot": id, "vote": "left" | "right" | "tie" | "both_bad"}``; the answer reveals the methods."""
    return arena.cast_vote(board, board.arena, rater, ballot, choice)


@router.get("/media/ballots/{ballot_id}/{side}.png")
def ballot_strip(ballot_id: str, side: str, board: Board = Depends(board_of)) -> FileResponse:
    """The picture of one side of a ballot (its URL names the ballot, never the method)."""
    from flowstudio.bench.io import load_frames
    from flowstudio.bench.methods import FolderMethod

    found = arena.ballot(board, ballot_id)
    if found is None or side not in ("left", "right"):
        raise ApiError(404, "not_found", f"no ballot picture {ballot_id}/{side}")
    method = found.left_method if side == "left" else found.right_method
    case = board.testset.by_id(found.case_id)
    sha = board.testset.manifest_sha256[:12]
    if found.kind == "check":
        if method == arena.GROUND_TRUTH:
            path = cached_png(board.cache_dir, f"{sha}-{case.id}-target", case.load_target)
        else:
            path = cached_png(
                board.cache_dir,
                f"{sha}-{case.id}-corrupted",
                lambda: arena.corrupt(case.load_target(), case.id),
            )
        return FileResponse(path, media_type="image/png")
    submission_id = found.left_submission if side == "left" else found.right_submission
    submission = board.store.submission(str(submission_id))
    output = None
    if submission is not None and submission.outputs and Path(submission.outputs).is_dir():
        output = FolderMethod(submission.outputs).find(case.id)
    if output is None:
        raise ApiError(404, "not_found", "that output is no longer kept (withdrawn?)")
    path = cached_png(board.cache_dir, f"out-{submission_id}-{case.id}", lambda: load_frames(output))
    return FileResponse(path, media_type="image/png")


@router.post("/api/arena/likert/ballots")
def new_likert_ballot(rater: str = Depends(rater_of), board: Board = Depends(board_of)) -> dict[str, Any]:
    """One output of one case to rate 1-5 per dimension, its method hidden."""
    found = likert.issue(board, board.arena, rater)
    view = ballot_view(board, found)
    return {
        "id": view["id"],
        "case": view["case"],
        "source": view["source"],
        "output": view["left"],
        "dimensions": list(likert.DIMENSIONS),
        "votes_today": view["votes_today"],
        "daily_cap": view["daily_cap"],
    }


@router.post("/api/arena/likert")
def rate(
    ballot: str = Body(..., embed=True),
    ratings: Any = Body(..., embed=True),
    rater: str = Depends(rater_of),
    board: Board = Depends(board_of),
) -> dict[str, Any]:
    """``{"ballot": id, "ratings": {"edit_accuracy": 1-5, "preservation", "temporal", "overall"}}``;
    the answer reveals the method."""
    return likert.rate(board, board.arena, rater, ballot, ratings)


def all_ratings(board: Board) -> dict[str, Any]:
    return {**arena.ratings(board, board.arena), "likert": likert.summary(board)}


@router.get("/api/ratings")
def ratings_json(board: Board = Depends(board_of)) -> dict[str, Any]:
    return all_ratings(board)


@router.get("/api/ratings/likert.csv")
def likert_csv(board: Board = Depends(board_of)) -> PlainTextResponse:
    """Every Likert rating as the CSV of ``flowstudio bench fit-weights`` (``rating``: overall)."""
    return PlainTextResponse(likert.csv_text(board), media_type="text/csv")


@router.get("/api/ratings.csv")
def ratings_csv(board: Board = Depends(board_of)) -> PlainTextResponse:
    """Every pair vote as the pairwise CSV of ``flowstudio bench fit-weights``."""
    with tempfile.TemporaryDirectory() as folder:
        text = write_pairwise_csv(arena.export_votes(board), Path(folder) / "votes.csv").read_text()
    return PlainTextResponse(text, media_type="text/csv")


@router.get("/arena", response_class=HTMLResponse, include_in_schema=False)
def arena_page(request: Request, board: Board = Depends(board_of)) -> HTMLResponse:
    from flowstudio.board.pages import templates

    return templates.TemplateResponse(
        request, "arena.html", {"testset": board.testset.name, "closed": board.rater_tokens.open}
    )


@router.get("/ratings", response_class=HTMLResponse, include_in_schema=False)
def ratings_page(request: Request, board: Board = Depends(board_of)) -> HTMLResponse:
    from flowstudio.board.pages import templates

    return templates.TemplateResponse(
        request, "ratings.html", {"testset": board.testset.name, "r": all_ratings(board)}
    )


@router.get("/rate", response_class=HTMLResponse, include_in_schema=False)
def rate_page(request: Request, board: Board = Depends(board_of)) -> HTMLResponse:
    from flowstudio.board.pages import templates

    return templates.TemplateResponse(
        request, "rate.html", {"testset": board.testset.name, "closed": board.rater_tokens.open}
    )
