"""Server-sent events of one job: its view whenever status, step or phase changes, until it ends.

The store is polled (every ``interval`` seconds), not the worker: it is the one truth, also when the
worker is another process on the same database. Each event is ``event: status`` (or ``end`` for the
terminal one) with the job as ``data`` and its ``id`` counting up; a ``: keep-alive`` comment goes out
every ``keepalive`` seconds so proxies do not close an idle stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from flowstudio.serve.store import FINAL

#: Headers of the stream: no caching, and no buffering by nginx (``X-Accel-Buffering``).
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(event: str, data: dict[str, Any], event_id: int) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def job_events(
    view: Callable[[], dict[str, Any] | None], interval: float = 0.25, keepalive: float = 15.0
) -> AsyncIterator[bytes]:
    """Events from ``view`` (the job as the API shows it, ``None`` once it is gone)."""
    last: tuple[Any, ...] | None = None
    event_id, quiet_since = 0, time.monotonic()
    yield b"retry: 2000\n\n"
    while True:
        job = view()
        if job is None:
            return
        key = (job["status"], job["progress"]["step"], job["progress"]["phase"], job["position"])
        if key != last:
            last, event_id, quiet_since = key, event_id + 1, time.monotonic()
            final = job["status"] in FINAL
            yield sse("end" if final else "status", job, event_id)
            if final:
                return
        elif time.monotonic() - quiet_since > keepalive:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
        await asyncio.sleep(interval)
