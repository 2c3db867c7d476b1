"""``POST /api/submissions`` (upload an archive of outputs) and ``DELETE /api/submissions/{id}`` (withdraw).

The body is multipart: a file part ``archive`` (the zip, :mod:`flowstudio.board.archive`) and text
fields ``method`` (the name shown on the board), ``description``, ``paper``, ``code`` and
``settings`` (JSON: what produced the outputs). The body is counted while it streams (413 past the
limit, as the job API does, :mod:`flowstudio.serve.uploads`) into one staging file; every problem of
the fields and the archive is then listed in one 422, and the staging file is removed: a refused
submission leaves no file and no row. An accepted one has its mp4s extracted into
``<data>/submissions/<id>/outputs/`` and is queued for the scorer (202).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from flowstudio.board.archive import Shape, archive_problems, extract
from flowstudio.board.auth import owner_of
from flowstudio.board.context import Board, board_of
from flowstudio.board.models import Method, Submission
from flowstudio.board.views import submission_summary
from flowstudio.serve.errors import ApiError, invalid
from flowstudio.serve.uploads import MultipartCallbacks, counted_stream, declared_too_large, too_large

router = APIRouter()

TEXT_FIELDS = ("method", "description", "paper", "code", "settings")
MAX_TEXT = 64 * 1024
METHOD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}\Z")


class _Form(MultipartCallbacks):
    """python-multipart callbacks: text fields kept (bounded), the ``archive`` part written to ``file``."""

    def __init__(self, file: Path) -> None:
        super().__init__()
        self.file = file
        self.fields: dict[str, bytearray] = {}
        self.archive_done = False
        self._out: BinaryIO | None = None

    def _headers_finished(self) -> None:
        name, _ = self._part_name()
        if name in self.fields or (name == "archive" and (self._out is not None or self.archive_done)):
            raise invalid(name, f"the form field {name!r} is given twice")
        self._name = name
        if name == "archive":
            self.file.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.file.open("wb")
        elif name in TEXT_FIELDS:
            self.fields[name] = bytearray()
        else:
            raise invalid(
                name or "form", f"unknown form field {name!r} (expected: archive, {', '.join(TEXT_FIELDS)})"
            )

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self._out.write(data[start:end])
        elif self._name in self.fields:
            if len(self.fields[self._name]) + end - start > MAX_TEXT:
                raise invalid(self._name, f"longer than {MAX_TEXT} bytes")
            self.fields[self._name].extend(data[start:end])

    def _end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
            self.archive_done = True

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


async def read_form(request: Request, staging: Path, limit: int) -> tuple[dict[str, str], bool]:
    """The text fields and whether an archive came, streaming the archive into ``staging``."""
    if declared_too_large(request.headers, limit):
        raise too_large(limit)
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "a submission is multipart/form-data: an 'archive' file and text fields",
        )
    form = _Form(staging)
    parser = MultipartParser(options[b"boundary"], form.callbacks())
    try:
        async for chunk in counted_stream(request.stream(), limit):
            parser.write(chunk)
        parser.finalize()
    except ApiError:
        raise
    except Exception as error:  # python-multipart's parse errors
        raise invalid("form", f"the multipart body cannot be read: {error}") from error
    finally:
        form.close()
    return {k: bytes(v).decode("utf-8", "replace").strip() for k, v in form.fields.items()}, form.archive_done


def field_problems(
    board: Board, fields: dict[str, str], owner: str
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Problems of the text fields, and the parsed settings."""
    problems: list[dict[str, str]] = []
    name = fields.get("method", "")
    if not METHOD_NAME.match(name):
        problems.append(
            {
                "field": "method",
                "message": f"a method name (letters, digits, ._:+-, at most 128) is needed, got {name!r}",
            }
        )
    else:
        existing = board.store.method(name)
        if existing is not None and existing.submitter != owner:
            problems.append(
                {
                    "field": "method",
                    "message": f"the method {name!r} belongs to another submitter: pick another name",
                }
            )
    settings: dict[str, Any] = {}
    if fields.get("settings"):
        try:
            settings = json.loads(fields["settings"])
        except ValueError as error:
            problems.append({"field": "settings", "message": f"not JSON: {error}"})
        if not isinstance(settings, dict):
            problems.append({"field": "settings", "message": "must be a JSON object"})
            settings = {}
    for key in ("paper", "code"):
        if len(fields.get(key, "")) > 512:
            problems.append({"field": key, "message": "at most 512 characters"})
    return problems, settings


def accept(
    board: Board, staging: Path, fields: dict[str, str], has_archive: bool, owner: str
) -> tuple[Submission, Method]:
    """Check the fields and the staged archive (422 naming every problem), then store the outputs
    and queue the submission. Blocking work (decoding every clip): the route runs it in a thread, so
    that pages and votes are served meanwhile."""
    problems, settings = field_problems(board, fields, owner)
    members: list[str] = []
    if not has_archive:
        problems.append(
            {"field": "archive", "message": "no archive: send the zip as a file part named 'archive'"}
        )
    else:
        expected = {
            c.case_id: Shape(c.frames, c.height, c.width) for c in board.store.cases(board.testset.name)
        }
        found, members = archive_problems(staging, expected, board.limits)
        problems += found
    if problems:
        listed = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:20])
        raise ApiError(
            422, "invalid_archive", f"{len(problems)} problem(s), nothing was stored: {listed}", problems
        )
    submission_id = uuid.uuid4().hex
    outputs = board.submissions_dir / submission_id / "outputs"
    try:
        extract(staging, members, outputs)
        method = board.store.ensure_method(
            fields["method"],
            description=fields.get("description", ""),
            paper=fields.get("paper") or None,
            code=fields.get("code") or None,
            submitter=owner,
        )
        submission = board.store.add_submission(
            method,
            board.testset,
            origin="upload",
            source=f"upload:{len(members)} clips",
            owner=owner,
            settings=settings,
            outputs=str(outputs),
            submission_id=submission_id,
            cases_total=len(board.testset),
        )
    except BaseException:
        shutil.rmtree(outputs.parent, ignore_errors=True)
        raise
    return submission, method


@router.post("/api/submissions", status_code=202)
async def submit(
    request: Request, owner: str = Depends(owner_of), board: Board = Depends(board_of)
) -> JSONResponse:
    """Upload an archive of outputs (one ``<case id>.mp4`` per case); it is checked, then queued and
    scored on the server by the benchmark's scorer."""
    waiting = board.store.pending(owner)
    if waiting >= board.limits.max_pending:  # before reading the body: a refused upload costs nothing
        raise ApiError(
            429,
            "too_many_pending",
            f"you have {waiting} submissions waiting to be scored (the limit is {board.limits.max_pending}); "
            "submit again when one is scored",
            headers={"Retry-After": "60"},
        )
    staging = board.staging_dir / f"{uuid.uuid4().hex}.zip"
    try:
        fields, has_archive = await read_form(request, staging, board.limits.max_upload)
        submission, method = await run_in_threadpool(accept, board, staging, fields, has_archive, owner)
    finally:
        staging.unlink(missing_ok=True)
    if board.worker is not None:
        board.worker.wake.set()
    return JSONResponse(
        submission_summary(submission, method),
        status_code=202,
        headers={"Location": f"/api/submissions/{submission.id}"},
    )


@router.delete("/api/submissions/{submission_id}")
def withdraw(
    submission_id: str, owner: str = Depends(owner_of), board: Board = Depends(board_of)
) -> dict[str, Any]:
    """Withdraw your submission: off the board, its files deleted (another's is 404, as a missing one)."""
    submission = board.store.submission(submission_id)
    if submission is None or submission.owner != owner or submission.origin != "upload":
        raise ApiError(404, "not_found", f"no submission {submission_id!r} of yours")
    board.store.withdraw(submission_id)
    shutil.rmtree(board.submissions_dir / submission_id, ignore_errors=True)
    method = board.store.method_by_id(submission.method_id)
    updated = board.store.submission(submission_id)
    assert updated is not None and method is not None
    return submission_summary(updated, method)
