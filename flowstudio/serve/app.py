"""The FastAPI app of ``flowstudio serve``: submit, read, list, cancel and delete jobs, follow their
progress (server-sent events, resumable with ``Last-Event-ID``), fetch their files.

Every error has one shape (:mod:`flowstudio.serve.errors`)::

    {"error": {"status": 422, "code": "invalid_request", "message": "...", "problems": [...]}}

``problems`` (422 only) names every problem of a request, one ``{"field", "message"}`` each.
With tokens (:mod:`flowstudio.serve.auth`) every ``/v1`` route needs ``Authorization: Bearer``; a
token sees, cancels and deletes only the jobs it submitted (another's job is 404, as one that does
not exist).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError

from flowstudio.serve import events
from flowstudio.serve.auth import Tokens
from flowstudio.serve.errors import ApiError, error_response, install_error_handlers
from flowstudio.serve.retention import remove_job_files
from flowstudio.serve.store import FINAL, STATUSES, AdmissionRefused, Job, JobStore, new_job_id
from flowstudio.serve.uploads import PATH_FIELDS, fingerprint, read_submission, sweep_orphans
from flowstudio.serve.worker import Worker, load_pipeline

log = logging.getLogger(__name__)

#: Fields the server sets itself: a request that sets them is refused.
SERVER_FIELDS = {
    "out": "the server chooses where a job's files go",
    "model": "the server's model is used",
    "checkpoint": "the server's model is used",
}
#: The default upload limit (``--max-upload``): a whole request body, files included.
MAX_UPLOAD = 512 * 1024 * 1024
#: Defined in :mod:`flowstudio.serve.errors`; kept importable from here.
__all__ = ["ApiError", "create_app", "error_response", "job_view", "validate_submission"]


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


def validate_submission(data: Any, input_root: Path | None, uploaded: dict[str, Path] | None = None) -> Any:
    """The request of a ``POST /v1/jobs`` body, or :class:`ApiError` 422 naming every problem.

    ``uploaded``: request fields given as uploaded files (field -> where the file was stored).
    """
    from pydantic import ValidationError

    from flowstudio.jobs import parse_request

    uploaded = uploaded or {}
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
    problems += [
        {"field": name, "message": f"{name} is both uploaded and named in the request: give it once"}
        for name in uploaded
        if data.get(name) is not None
    ]
    problems += _path_problems({k: v for k, v in data.items() if k not in uploaded}, input_root)
    clean = {k: v for k, v in data.items() if k not in SERVER_FIELDS}
    if input_root is not None:
        clean = {
            k: _inside(v, input_root) if k in PATH_FIELDS and _is_path(k, v) else v for k, v in clean.items()
        }
    clean.update({name: str(path) for name, path in uploaded.items()})
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
                    "message": f"{name} names a file on the server, and this server has no input root "
                    "(--input-root DIR): upload the file instead (multipart/form-data, a part named "
                    f"{name!r})",
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


def job_view(store: JobStore, job: Job, jobs_dir: Path | None = None) -> dict[str, Any]:
    """A job as the API shows it (uploaded inputs as ``upload:<file>``, not as server paths)."""
    files = json.loads(job.files) if job.files else {}
    request = json.loads(job.request)
    if jobs_dir is not None:
        inputs = str(jobs_dir / job.id / "inputs") + "/"
        for name in PATH_FIELDS:
            value = request.get(name)
            if isinstance(value, str) and value.startswith(inputs):
                request[name] = "upload:" + value[len(inputs) :]
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "request": request,
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
        "purged_at": job.purged_at,
        "version": job.version,
    }


def _request_body_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``POST /v1/jobs`` body for OpenAPI: JSON, or multipart (``request`` + files); and its defs."""
    from pydantic import TypeAdapter

    from flowstudio.jobs.requests import JobRequest

    schema = TypeAdapter(JobRequest).json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    multipart = {
        "type": "object",
        "required": ["request"],
        "properties": {
            "request": {"type": "string", "description": "the job request as JSON (the JSON body's schema)"},
            **{
                name: {"type": "string", "format": "binary", "description": f"the {name} file"}
                for name in PATH_FIELDS
            },
        },
    }
    body = {
        "required": True,
        "content": {"application/json": {"schema": schema}, "multipart/form-data": {"schema": multipart}},
    }
    return body, defs


def served_student(model: str | Path | None) -> dict[str, Any] | None:
    """The sampling settings of the model a server runs when it is an exported DMD student (steps,
    guidance, shift, sampler from its ``distill.json``); ``None`` for any other model."""
    from flowstudio.distill.export import student_settings
    from flowstudio.errors import InputError
    from flowstudio.models import resolve_model

    try:
        return student_settings(Path(resolve_model(model)))
    except InputError:  # no model at all: the worker reports that on its jobs
        return None


def create_app(
    db: str | Path = "flowstudio-jobs.sqlite",
    jobs_dir: str | Path | None = None,
    model: str | Path | None = None,
    *,
    load_model: Callable[[], Any] | None = None,
    max_queue: int = 100,
    input_root: str | Path | None = None,
    start_worker: bool = True,
    tokens: Tokens | None = None,
    max_per_token: int = 20,
    max_upload: int = MAX_UPLOAD,
    worker_name: str = "",
    device: str = "cpu",
    events_interval: float = 0.25,
    keep_days: float | None = None,
    sweep_every: float = 3600.0,
) -> FastAPI:
    """The app: a :class:`JobStore` on ``db`` and one :class:`Worker` started with the app's lifespan.

    Args:
        db: a SQLite file path or any SQLAlchemy URL (upgraded to the newest schema on opening).
        jobs_dir: the jobs' files (default: ``<db folder>/jobs``, or ``./flowstudio-jobs`` for a URL).
        model: the model folder (``None``: ``$FLOWSTUDIO_MODEL``, else the packaged toy model).
        load_model: instead of ``model``, a function returning the loaded model (called on the worker).
        max_queue: queued jobs beyond which a submission gets 429 with ``Retry-After``.
        input_root: the folder that request paths (``source``, ``image``...) are read from; ``None``:
            requests that name an input file are refused (inputs are uploaded).
        start_worker: ``False`` runs no worker (jobs stay queued; for tests of the queue).
        tokens: the bearer tokens (``None`` or empty: the server is open, and says so in its log).
        max_per_token: queued plus running jobs one token's owner may have; beyond, 429 with
            ``Retry-After`` (with tokens only: on an open server ``max_queue`` is the bound).
        max_upload: bytes a submission's body may have (files included); beyond, 413.
        worker_name: this server's worker in the store; servers sharing one database need distinct
            names (a restart re-queues only the jobs its own worker was running).
        device: where the worker loads the model (``cpu``, ``cuda``, ``cuda:1``...).
        events_interval: seconds between the store polls of a server-sent event stream.
        keep_days: the worker removes the files of jobs finished more than this many days ago (and
            stale studio uploads), when it starts and every ``sweep_every`` seconds (``None``: keep).
    """
    if jobs_dir is None:
        jobs_dir = Path(db).expanduser().parent / "jobs" if "://" not in str(db) else Path("flowstudio-jobs")
    jobs_dir = Path(jobs_dir).resolve()
    root = Path(input_root).resolve() if input_root is not None else None
    tokens = tokens or Tokens({})
    store = JobStore(db)
    worker = Worker(
        store,
        jobs_dir,
        load_model or (lambda: load_pipeline(model, device=device)),
        name=worker_name,
        keep_days=keep_days,
        sweep_every=sweep_every,
    )
    bearer = HTTPBearer(auto_error=False, description="a token of the server's token file")

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        if tokens.open:
            log.warning("no tokens configured: this server is OPEN, anyone who reaches it can run jobs")
        else:
            names = sorted(set(tokens.by_token.values()))
            log.info("%d token(s) for %s", len(tokens.by_token), ", ".join(names))
        app.state.recovered = store.recover(worker_name)
        app.state.swept = sweep_orphans(jobs_dir, store)
        if start_worker:
            worker.start()
        try:
            yield
        finally:
            worker.stop()
            store.close()

    app = FastAPI(title="flowstudio", version="1", lifespan=lifespan)
    app.state.store, app.state.worker, app.state.jobs_dir = store, worker, jobs_dir
    app.state.tokens = tokens
    app.state.max_queue = max_queue
    # a DMD student's own sampling (its distill.json) or None: the studio's sliders start from it
    app.state.student = served_student(model) if load_model is None else None
    # what the studio mounted on this app applies to its logged-in owners (None: open, no per-owner bound)
    app.state.max_per_token = None if tokens.open else max_per_token

    install_error_handlers(app)  # every error in the one error shape

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, error: Exception) -> JSONResponse:
        log.exception("internal error")
        return error_response(500, "internal_error", f"internal error: {type(error).__name__}")

    def owner_of(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        """The owner of the request's token; 401 without a known one (unless the server is open)."""
        header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
        owner = tokens.owner(header)
        if owner is None:
            raise ApiError(
                401,
                "unauthorized",
                "a valid token is needed: Authorization: Bearer <token>"
                if header
                else "no token: send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return owner

    def _job(job_id: str, owner: str) -> Job:
        job = store.get(job_id)
        if job is None or job.owner != owner:
            raise ApiError(404, "not_found", f"no job {job_id!r}")
        return job

    def _accepted(job: Job, status: int = 202) -> JSONResponse:
        return JSONResponse(
            job_view(store, job, jobs_dir), status_code=status, headers={"Location": f"/v1/jobs/{job.id}"}
        )

    def _admit(owner: str, **fields: Any) -> tuple[Job, bool]:
        """Queue through the store's one admission step (bounds checked and insert in one transaction)."""
        try:
            return store.admit(
                max_queue=max_queue,
                # one shared owner on an open server: --max-queue is the bound
                max_per_owner=None if tokens.open else max_per_token,
                owner=owner,
                **fields,
            )
        except AdmissionRefused as refused:
            raise ApiError(
                429, refused.code, refused.message, headers={"Retry-After": str(refused.retry_after)}
            ) from refused
        except OperationalError as error:  # the lock not had within the busy timeout, or no database
            log.warning("admission failed: %s", error)
            raise ApiError(
                503,
                "store_unavailable",
                "the job store is busy or unreachable: retry shortly",
                headers={"Retry-After": "5"},
            ) from error

    @app.post("/v1/jobs", status_code=202, openapi_extra={"x-flowstudio-body": True})
    async def submit(
        request: Request,
        idempotency_key: str | None = Header(None, max_length=255),
        owner: str = Depends(owner_of),
    ) -> JSONResponse:
        """Queue a job: a generate, edit or avatar request (the job layer's schema) as the JSON body, or
        multipart: a ``request`` field with that JSON and the input files as parts named after their
        fields (``source``, ``image``, ``audio``, ``mask``, ``target_image``)."""
        job_id = new_job_id()
        folder = jobs_dir / job_id
        try:
            submission = await read_submission(request, folder / "inputs", max_upload)
            job_request = validate_submission(submission.data, root, submission.files)
            # the fields the client set, not the defaults: a field left unset stays the job layer's to
            # fill when the job runs (a DMD student's own steps, guidance and sampler: distill.json)
            dump = {**job_request.model_dump(mode="json", exclude_unset=True), "kind": job_request.kind}
            print_ = fingerprint(dump, submission.digests)
            if idempotency_key is not None:
                existing = store.by_key(idempotency_key, owner)
                if existing is not None:
                    shutil.rmtree(folder, ignore_errors=True)
                    return _same_key(existing, print_, dump)
            job, created = _admit(
                owner,
                kind=job_request.kind,
                request=dump,
                idempotency_key=idempotency_key,
                fingerprint=print_,
                job_id=job_id,
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # uploads of a refused submission: none kept
            raise
        if not created:
            shutil.rmtree(folder, ignore_errors=True)
            return _same_key(job, print_, dump)
        worker.wake.set()
        return _accepted(job)

    def _same_key(job: Job, print_: str, dump: dict[str, Any]) -> JSONResponse:
        """The job of an idempotency key, if it was given the same request (and the same files)."""
        same = job.fingerprint == print_ if job.fingerprint else json.loads(job.request) == dump
        if not same:
            raise ApiError(
                409,
                "idempotency_conflict",
                "this Idempotency-Key was used for another request: use a new key",
            )
        return _accepted(job)

    @app.get("/v1/jobs/{job_id}")
    async def get_job(job_id: str, owner: str = Depends(owner_of)) -> dict[str, Any]:
        return job_view(store, _job(job_id, owner), jobs_dir)

    @app.get("/v1/jobs")
    async def list_jobs(
        status: str | None = Query(None, description=f"one of {', '.join(STATUSES)}"),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0),
        owner: str = Depends(owner_of),
    ) -> dict[str, Any]:
        """The token's own jobs, newest first."""
        if status is not None and status not in STATUSES:
            raise ApiError(
                422,
                "invalid_parameters",
                f"status must be one of {', '.join(STATUSES)}, got {status!r}",
                [{"field": "status", "message": "unknown status"}],
            )
        jobs, total = store.list(status, limit, offset, owner=owner)
        return {
            "jobs": [job_view(store, j, jobs_dir) for j in jobs],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    @app.post("/v1/jobs/{job_id}/cancel")
    async def cancel(job_id: str, owner: str = Depends(owner_of)) -> dict[str, Any]:
        job = _job(job_id, owner)
        if job.status in ("succeeded", "failed"):
            raise ApiError(409, "already_finished", f"job {job_id} already {job.status}: nothing to cancel")
        return job_view(store, store.cancel(job_id) or job, jobs_dir)

    @app.delete(
        "/v1/jobs/{job_id}",
        status_code=204,
        response_class=Response,
        responses={
            204: {"description": "deleted: the job's row and files are gone"},
            409: {"description": "the job is running: cancel it first"},
        },
    )
    async def delete_job(job_id: str, owner: str = Depends(owner_of)) -> Response:
        """Delete a job and its files (uploads, results; a studio job's upload folder). A queued job
        leaves the queue and never runs; a running one is refused (409 ``job_running``): cancel it,
        then delete it once it has stopped. Afterwards the job is 404 and its idempotency key free."""
        _job(job_id, owner)
        removed = store.delete(job_id)
        if removed is None:
            current = store.get(job_id)
            if current is not None and current.status == "running":
                raise ApiError(
                    409,
                    "job_running",
                    f"job {job_id} is running: cancel it first (POST /v1/jobs/{job_id}/cancel), then "
                    "delete it once it has stopped",
                )
            raise ApiError(404, "not_found", f"no job {job_id!r}")
        remove_job_files(jobs_dir, removed)
        return Response(status_code=204)

    @app.get(
        "/v1/jobs/{job_id}/events",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
            204: {"description": "the job has ended and Last-Event-ID is its last event: nothing newer"},
        },
    )
    async def job_events(
        job_id: str,
        last_event_id: str | None = Header(
            None,
            max_length=64,
            description="the id of the last event received: only newer events are sent",
        ),
        owner: str = Depends(owner_of),
    ) -> Response:
        """Server-sent events: ``status`` whenever the job changes (status, progress, queue position),
        then ``end`` with the final job; the stream closes after ``end``. Event ids are the job's own
        (``<version>-<position>``): reconnecting with ``Last-Event-ID`` resumes after that event."""
        _job(job_id, owner)
        after = events.parse_event_id(last_event_id)

        def view() -> dict[str, Any] | None:
            job = store.get(job_id)
            return job_view(store, job, jobs_dir) if job is not None else None

        now = view()
        if now is not None and now["status"] in FINAL and not events.newer(events.key(now), after):
            return Response(status_code=204)
        return StreamingResponse(
            events.job_events(view, events_interval, after=after),
            media_type="text/event-stream",
            headers=events.HEADERS,
        )

    @app.get("/v1/jobs/{job_id}/files/{name}")
    async def get_file(job_id: str, name: str, owner: str = Depends(owner_of)) -> FileResponse:
        """A result file of the job, by its name (``out.mp4``) or its role (``video``, ``record``)."""
        job = _job(job_id, owner)
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
        """Open to all (for load balancers): the worker, the model and the queue."""
        ok = worker.model_error is None and (worker.alive or not start_worker)
        body = {
            "status": "ok" if ok else "unhealthy",
            "worker": {
                "name": worker_name,
                "alive": worker.alive,
                "failures_in_a_row": worker.failures,
                "last_error": worker.last_error,
                "model_loaded": worker.model is not None,
                "model_error": worker.model_error,
                "current_job": worker.current,
            },
            "queued": store.count("queued"),
            "running": store.count("running"),
            "max_queue": max_queue,
            "open": tokens.open,
            "keep_days": keep_days,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, with the submission body (read by hand, so FastAPI cannot see it)."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            body, defs = _request_body_schema()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs)
            post = schema["paths"]["/v1/jobs"]["post"]
            post.pop("x-flowstudio-body", None)
            post["requestBody"] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
