"""The one error shape of the API::

    {"error": {"status": 422, "code": "invalid_request", "message": "...", "problems": [...]}}

``problems`` (422 only) names every problem of a request, one ``{"field", "message"}`` each.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


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
