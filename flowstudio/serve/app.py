"""The FastAPI app of ``flowstudio serve``: submit, read, list and cancel jobs, fetch their files.

Every error has one shape::

    {"error": {"status": 422, "code": "invalid_request", "message": "...", "problems": [...]}}

``problems`` (422 only) names every problem of a request, one ``{"field", "message"}`` each.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowstudio.serve.store import STATUSES, Job, JobStore
from flowstudio.serve.worker import Worker, load_pipeline

#: Fields the server sets itself: a request that sets them is refused.
SERVER_FIELDS = {
    "out": "the server chooses where a job's files go",
    "model": "the server's model is used",
    "checkpoint": "the server's model is used",
}
#: Request fields that name an input file on the server.
PATH_FIELDS = ("source", "image", "audio", "mask", "target_image")


class ApiError(Exception):
    """An error answered in the one error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        problems: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.problems, self.headers = problems, headers


def error_response(
    status: int,
    code: str,
    message: str,
    problems: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if problems is not None:
        body["problems"] = problems
    return JSONResponse({"error": body}, status_code=status, headers=headers)


class _One:
    """One pydantic problem, seen as a ValidationError by :func:`flowstudio.jobs.errors.error_message`."""

    def __init__(self, problem: dict[str, Any]) -> None:
        self.problem = problem

    def errors(self, include_url: bool = False) -> list[dict[str, Any]]:
        return [self.problem]


def request_problems(error: Any) -> list[dict[str, str]]:
    """Every problem of a pydantic ``ValidationError``, each worded as the CLI words one."""
    from flowstudio.jobs.errors import _validation_message

    problems = []
    for problem in error.errors(include_url=False):
        loc = [str(part) for part in problem["loc"] if not isinstance(part, int)]
        if loc and loc[0] in ("generate", "edit", "avatar"):  # the union's tag: not a field
            loc = loc[1:]
            problem = {**problem, "loc": tuple(loc)}
        field = ".".join(loc) or "request"
        message = _validation_message(_One(problem), set()).replace("unknown option", "unknown field")
        problems.append({"field": field, "message": " ".join(message.splitlines())})
    return problems


def validate_submission(data: Any, input_root: Path | None) -> Any:
    """The request of a ``POST /v1/jobs`` body, or :class:`ApiError` 422 naming every problem."""
    from pydantic import ValidationError

    from flowstudio.jobs import parse_request

    if not isinstance(data, dict):
        raise ApiError(
            422,
            "invalid_request",
            "the body must be a JSON object (a job request)",
            [{"field": "request", "message": "the body must be a JSON object"}],
        )
    problems = [
        {"field": name, "message": f"{name} is set by the server ({why}): remove it"}
        for name, why in SERVER_FIELDS.items()
        if data.get(name) is not None
    ]
    problems += _path_problems(data, input_root)
    clean = {k: v for k, v in data.items() if k not in SERVER_FIELDS}
    if input_root is not None:
        clean = {
            k: _inside(v, input_root) if k in PATH_FIELDS and _is_path(k, v) else v for k, v in clean.items()
        }
    request = None
    try:
        request = parse_request(clean)
    except ValidationError as error:
        problems += request_problems(error)
    if problems:
        listed = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise ApiError(
            422, "invalid_request", f"{len(problems)} problem(s) in the request: {listed}", problems
        )
    return request


def _is_path(name: str, value: Any) -> bool:
    return isinstance(value, str) and not (name == "mask" and value == "auto")


def _inside(value: str, root: Path) -> str:
    return str((root / value).resolve())


def _path_problems(data: dict[str, Any], input_root: Path | None) -> list[dict[str, str]]:
    problems = []
    for name in PATH_FIELDS:
        value = data.get(name)
        if not _is_path(name, value):
            continue
        if input_root is None:
            problems.append(
                {
                    "field": name,
                    "message": f"{name} names a file on the server, and this server "
                    "has no input root (start it with --input-root DIR); uploads are not served yet",
                }
            )
            continue
        path = (input_root / value).resolve()
        if not path.is_relative_to(input_root):
            problems.append(
                {
                    "field": name,
                    "message": f"{name} {value!r} is outside the input root: give a path relative to it",
                }
            )
    return problems


def job_view(store: JobStore, job: Job) -> dict[str, Any]:
    """A job as the API shows it."""
    files = json.loads(job.files) if job.files else {}
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "request": json.loads(job.request),
        "progress": {
            "step": job.step,
            "total": job.total,
            "phase": job.phase,
            "fraction": round(job.step / job.total, 4) if job.total else 0.0,
        },
        "position": store.position(job),
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "error": job.error,
        "note": job.note,
        "files": {name: f"/v1/jobs/{job.id}/files/{file}" for name, file in files.items()},
    }


def create_app(
    db: str | Path = "flowstudio-jobs.sqlite",
    jobs_dir: str | Path | None = None,
    model: str | Path | None = None,
    *,
    load_model: Callable[[], Any] | None = None,
    max_queue: int = 100,
    input_root: str | Path | None = None,
    start_worker: bool = True,
) -> FastAPI:
    """The app: a :class:`JobStore` on ``db`` and one :class:`Worker` started with the app's lifespan.

    Args:
        db: a SQLite file path or any SQLAlchemy URL.
        jobs_dir: the jobs' files (default: ``<db folder>/jobs``, or ``./flowstudio-jobs`` for a URL).
        model: the model folder (``None``: ``$FLOWSTUDIO_MODEL``, else the packaged toy model).
        load_model: instead of ``model``, a function returning the loaded model (called on the worker).
        max_queue: queued jobs beyond which a submission gets 429 with ``Retry-After``.
        input_root: the folder that request paths (``source``, ``image``...) are read from; ``None``:
            requests that name an input file are refused.
        start_worker: ``False`` runs no worker (jobs stay queued; for tests of the queue).
    """
    if jobs_dir is None:
        jobs_dir = Path(db).expanduser().parent / "jobs" if "://" not in str(db) else Path("flowstudio-jobs")
    jobs_dir = Path(jobs_dir).resolve()
    root = Path(input_root).resolve() if input_root is not None else None
    store = JobStore(db)
    worker = Worker(store, jobs_dir, load_model or (lambda: load_pipeline(model)))

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        app.state.recovered = store.recover()
        if start_worker:
            worker.start()
        try:
            yield
        finally:
            worker.stop()
            store.close()

    app = FastAPI(title="flowstudio", version="1", lifespan=lifespan)
    app.state.store, app.state.worker, app.state.jobs_dir = store, worker, jobs_dir

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.problems, error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(
            error.status_code, code, str(error.detail), headers=getattr(error, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _parameter_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()
        ]
        return error_response(
            422, "invalid_parameters", "; ".join(f"{p['field']}: {p['message']}" for p in problems), problems
        )

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, error: Exception) -> JSONResponse:
        return error_response(500, "internal_error", f"internal error: {type(error).__name__}")

    def _job(job_id: str) -> Job:
        job = store.get(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id!r}")
        return job

    @app.post("/v1/jobs", status_code=202)
    async def submit(request: Request, idempotency_key: str | None = Header(None)) -> JSONResponse:
        """Queue a job: the body is a generate, edit or avatar request (the job layer's schema)."""
        try:
            data = await request.json()
        except ValueError as error:
            raise ApiError(
                422,
                "invalid_request",
                f"the body is not JSON: {error}",
                [{"field": "request", "message": "the body is not JSON"}],
            ) from error
        if idempotency_key is not None:
            existing = store.by_key(idempotency_key)
            if existing is not None:
                return _same_key(existing, data)
        job_request = validate_submission(data, root)
        queued = store.count("queued")
        if queued >= max_queue:
            mean = store.mean_run_seconds() or 10.0
            retry = max(1, math.ceil(mean))
            raise ApiError(
                429,
                "queue_full",
                f"{queued} jobs are queued (the limit is {max_queue}); retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )
        job, created = store.add(job_request.kind, job_request.model_dump(mode="json"), idempotency_key)
        if not created:
            return _same_key(job, data)
        worker.wake.set()
        return JSONResponse(job_view(store, job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    def _same_key(job: Job, data: Any) -> JSONResponse:
        """The job of an idempotency key, if ``data`` is the request it was given with."""
        try:
            same = validate_submission(data, root).model_dump(mode="json") == json.loads(job.request)
        except ApiError:
            same = False
        if not same:
            raise ApiError(
                409,
                "idempotency_conflict",
                "this Idempotency-Key was used for another request: use a new key",
            )
        return JSONResponse(job_view(store, job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    @app.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        return job_view(store, _job(job_id))

    @app.get("/v1/jobs")
    async def list_jobs(
        status: str | None = Query(None, description=f"one of {', '.join(STATUSES)}"),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        if status is not None and status not in STATUSES:
            raise ApiError(
                422,
                "invalid_parameters",
                f"status must be one of {', '.join(STATUSES)}, got {status!r}",
                [{"field": "status", "message": "unknown status"}],
            )
        jobs, total = store.list(status, limit, offset)
        return {"jobs": [job_view(store, j) for j in jobs], "total": total, "limit": limit, "offset": offset}

    @app.post("/v1/jobs/{job_id}/cancel")
    async def cancel(job_id: str) -> dict[str, Any]:
        job = _job(job_id)
        if job.status in ("succeeded", "failed"):
            raise ApiError(409, "already_finished", f"job {job_id} already {job.status}: nothing to cancel")
        return job_view(store, store.cancel(job_id) or job)

    @app.get("/v1/jobs/{job_id}/files/{name}")
    async def get_file(job_id: str, name: str) -> FileResponse:
        """A result file of the job, by its name (``out.mp4``) or its role (``video``, ``record``)."""
        job = _job(job_id)
        files = json.loads(job.files) if job.files else {}
        file = files.get(name) or (name if name in files.values() else None)
        folder = (jobs_dir / job.id).resolve()
        path = (folder / file).resolve() if file else None
        if path is None or path.parent != folder or not path.is_file():
            raise ApiError(
                404,
                "not_found",
                f"job {job_id} has no file {name!r}"
                + (f" (it has: {', '.join(sorted(files.values()))})" if files else ""),
            )
        media = {".mp4": "video/mp4", ".json": "application/json"}.get(
            path.suffix, "application/octet-stream"
        )
        return FileResponse(path, media_type=media, filename=path.name)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ok = worker.model_error is None and (worker.alive or not start_worker)
        body = {
            "status": "ok" if ok else "unhealthy",
            "worker": {
                "alive": worker.alive,
                "model_loaded": worker.model is not None,
                "model_error": worker.model_error,
                "current_job": worker.current,
            },
            "queued": store.count("queued"),
            "running": store.count("running"),
            "max_queue": max_queue,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    return app
