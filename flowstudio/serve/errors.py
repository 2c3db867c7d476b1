"""The one error shape of the API::

    {"error": {"status": 422, "code": "invalid_request", "message": "...", "problems": [...]}}

``problems`` (422 only) names every problem of a request, one ``{"field", "message"}`` each.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


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


def invalid(field: str, message: str) -> ApiError:
    """A 422 with one problem."""
    return ApiError(422, "invalid_request", f"{field}: {message}", [{"field": field, "message": message}])


def install_error_handlers(app: FastAPI) -> None:
    """Answer :class:`ApiError`, HTTP errors (404, 405, ...) and request-validation errors of ``app``
    in the one error shape (:func:`error_response`); the job API and the board share it."""

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
