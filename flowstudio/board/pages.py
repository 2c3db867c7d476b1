"""Server-rendered pages (Jinja2 templates in ``templates/``) over :mod:`flowstudio.board.views`, and
the filmstrip pictures of the per-case viewer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from flowstudio.board import views
from flowstudio.board.aggregate import ALL
from flowstudio.board.api import check_scope
from flowstudio.board.context import Board, board_of
from flowstudio.board.media import cached_png, mask_frames
from flowstudio.serve.errors import ApiError

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def number(value: Any) -> str:
    """A metric value in 3-4 significant digits (``-`` for none)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    value = float(value)
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 10:
        return f"{value:.2f}"
    return f"{value:.3f}"


templates.env.filters["num"] = number


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    board: Board = request.app.state.board
    return templates.TemplateResponse(request, name, {"testset": board.testset.name, **context})


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/board", status_code=307)


@router.get("/board", response_class=HTMLResponse)
def board_page(
    request: Request, edit_type: str = Query(ALL), board: Board = Depends(board_of)
) -> HTMLResponse:
    return _page(request, "board.html", view=views.leaderboard(board, check_scope(board, edit_type)))


@router.get("/methods/{name:path}", response_class=HTMLResponse)
def method_page(request: Request, name: str, board: Board = Depends(board_of)) -> HTMLResponse:
    method = board.store.method(name)
    if method is None:
        raise ApiError(404, "not_found", f"no method {name!r}")
    return _page(request, "method.html", card=views.method_card(board, method))


@router.get("/submissions/{submission_id}", response_class=HTMLResponse)
def submission_page(request: Request, submission_id: str, board: Board = Depends(board_of)) -> HTMLResponse:
    submission = board.store.submission(submission_id)
    if submission is None:
        raise ApiError(404, "not_found", f"no submission {submission_id!r}")
    return _page(request, "submission.html", sub=views.submission_detail(board, submission))


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: str, board: Board = Depends(board_of)) -> HTMLResponse:
    view = views.case_view(board, case_id)
    if view is None:
        raise ApiError(404, "not_found", f"no case {case_id!r} in {board.testset.name}")
    return _page(request, "case.html", case=view)


@router.get("/submit", response_class=HTMLResponse)
def submit_page(request: Request, board: Board = Depends(board_of)) -> HTMLResponse:
    cases = board.store.cases(board.testset.name)
    shape = (cases[0].frames, cases[0].height, cases[0].width) if cases else None
    return _page(
        request,
        "submit.html",
        cases=len(cases),
        shape=shape,
        open=board.tokens.open,
        max_mb=board.limits.max_upload / 2**20,
    )


CASE_KINDS = ("source", "target", "mask", "target_mask")


@router.get("/media/cases/{case_id}/{kind}.png")
def case_strip(case_id: str, kind: str, board: Board = Depends(board_of)) -> FileResponse:
    """A filmstrip of a case's ``source``, ``target`` (ground truth), ``mask`` or ``target_mask``."""
    if kind not in CASE_KINDS or board.store.case(board.testset.name, case_id) is None:
        raise ApiError(404, "not_found", f"no {kind!r} picture of case {case_id!r}")
    case = board.testset.by_id(case_id)
    loaders = {
        "source": case.load_source,
        "target": case.load_target,
        "mask": lambda: None if case.mask is None else mask_frames(case.load_mask()),
        "target_mask": lambda: None if case.target_mask is None else mask_frames(case.load_target_mask()),
    }
    frames = loaders[kind]()
    if frames is None:
        raise ApiError(404, "not_found", f"case {case_id!r} has no {kind}")
    key = f"{board.testset.manifest_sha256[:12]}-{case_id}-{kind}"
    return FileResponse(cached_png(board.cache_dir, key, lambda: frames), media_type="image/png")


@router.get("/media/submissions/{submission_id}/{case_id}.png")
def output_strip(submission_id: str, case_id: str, board: Board = Depends(board_of)) -> FileResponse:
    """A filmstrip of a submission's output on one case (when its outputs are kept)."""
    from flowstudio.bench.io import load_frames
    from flowstudio.bench.methods import FolderMethod

    submission = board.store.submission(submission_id)
    if (
        submission is None
        or submission.outputs is None
        or submission.status == "withdrawn"
        or not Path(submission.outputs).is_dir()
    ):
        raise ApiError(404, "not_found", f"no outputs kept for submission {submission_id!r}")
    if board.store.case(board.testset.name, case_id) is None:
        raise ApiError(404, "not_found", f"no case {case_id!r}")
    found = FolderMethod(submission.outputs).find(case_id)
    if found is None:
        raise ApiError(404, "not_found", f"submission {submission_id!r} has no output for {case_id!r}")
    key = f"out-{submission_id}-{case_id}"
    return FileResponse(cached_png(board.cache_dir, key, lambda: load_frames(found)), media_type="image/png")
