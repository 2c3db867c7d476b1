"""Server-sent events of one job: its view whenever it changes, until it ends; resumable.

The store is polled (every ``interval`` seconds), not the worker: it is the one truth, also when the
worker is another process on the same database. Each event is ``event: status`` (or ``end`` for the
terminal one) with the job as ``data``; a ``: keep-alive`` comment goes out every ``keepalive``
seconds so proxies do not close an idle stream.

Event ids are the job's own, the same on every connection and every server: ``<version>-<position>``,
where ``version`` counts the changes of the job's row (status, progress, cancel, finish...) and
``position`` is its place in the queue (``0`` once it is not queued; while queued it only falls). A
client that reconnects with ``Last-Event-ID`` gets only newer events: a later version, or the same
version at an earlier queue position. A job that has ended, asked for with the id of its last event,
has nothing newer: the route answers 204 (which also tells a browser's ``EventSource`` to stop).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from flowstudio.serve.store import FINAL

#: Headers of the stream: no caching, and no buffering by nginx (``X-Accel-Buffering``).
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_ID = re.compile(r"^\s*(\d{1,18})-(\d{1,18})\s*$")

Key = tuple[int, int]


def sse(event: str, data: dict[str, Any], event_id: str) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()


def key(job: dict[str, Any]) -> Key:
    """``(version, position)`` of a job view (position 0 when not queued)."""
    return int(job["version"]), int(job["position"] or 0)


def event_id(job_key: Key) -> str:
    return f"{job_key[0]}-{job_key[1]}"


def parse_event_id(text: str | None) -> Key | None:
    """A ``Last-Event-ID`` as a key; ``None`` for none or one that is not ours (then: every event)."""
    match = _ID.match(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def newer(job_key: Key, last: Key | None) -> bool:
    """Whether the state ``job_key`` is news to a client whose last event was ``last``."""
    if last is None:
        return True
    (version, position), (last_version, last_position) = job_key, last
    return version > last_version or (version == last_version and 0 < position < last_position)


async def job_events(
    view: Callable[[], dict[str, Any] | None],
    interval: float = 0.25,
    keepalive: float = 15.0,
    after: Key | None = None,
) -> AsyncIterator[bytes]:
    """Events from ``view`` (the job as the API shows it, ``None`` once it is gone), only those newer
    than ``after`` (the ``Last-Event-ID`` of a reconnecting client)."""
    last, quiet_since = after, time.monotonic()
    yield b"retry: 2000\n\n"
    while True:
        job = view()
        if job is None:
            return
        final = job["status"] in FINAL
        now_key = key(job)
        if newer(now_key, last):
            last, quiet_since = now_key, time.monotonic()
            yield sse("end" if final else "status", job, event_id(now_key))
            if final:
                return
        elif final:  # the client already has the end
            return
        elif time.monotonic() - quiet_since > keepalive:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
        await asyncio.sleep(interval)
