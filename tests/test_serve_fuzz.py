"""Property-based fuzzing of the serve API's OpenAPI schema (schemathesis): whatever the body, path,
query or headers, no answer is a 5xx, and every error is in the one error shape.

Bounded: a few dozen examples per operation, on a server with tokens (the fuzzer sends a valid one, so
requests reach validation) and no worker (submitted jobs stay queued; the queue fills and 429s too).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402

from flowstudio.serve.app import create_app  # noqa: E402
from flowstudio.serve.auth import parse_tokens  # noqa: E402

TOKEN = "fuzz-token-0123456789abcdef"
EXAMPLES = 25


# The schema must exist at import (parametrize needs it): the app's store and job folder are in a
# temporary folder removed after the module (not in memory: each call runs the app's lifespan, whose
# end disposes the engine, and with it an in-memory database).
_JOBS = Path(tempfile.mkdtemp(prefix="flowstudio-fuzz-"))
_APP = create_app(
    _JOBS / "jobs.sqlite",
    _JOBS / "jobs",
    start_worker=False,
    tokens=parse_tokens(f"fuzzer {TOKEN}", "test"),
    max_queue=20,
    max_upload=64 * 1024,
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture(scope="module", autouse=True)
def _remove_job_folder() -> Any:
    yield
    shutil.rmtree(_JOBS, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure reproduces
    suppress_health_check=list(HealthCheck),
)
def test_no_5xx_and_one_error_shape(case) -> None:  # type: ignore[no-untyped-def]
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = json.loads(response.content)
        assert set(body) == {"error"}, body
        assert body["error"]["status"] == response.status_code and body["error"]["code"], body
