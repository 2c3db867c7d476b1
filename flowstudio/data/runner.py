"""Run one task per item, in this process or on Ray (local by default, or a cluster by address).

Shared by ``flowstudio data build`` and ``flowstudio avatar preprocess``. Tasks are independent and
write their own done-records, so the order they finish in does not matter, and a run killed part-way
loses only the tasks in flight.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from flowstudio.checks import check_int
from flowstudio.errors import InputError

T = TypeVar("T")


def check_workers(workers: object) -> int:
    """``workers`` as an integer >= 1, else :class:`InputError`."""
    return check_int("workers", workers, minimum=1)


def done_record(path: Path, digest: str, files: Callable[[dict[str, Any]], Iterable[Path]]) -> dict | None:
    """The done-record at ``path`` if it was written with settings ``digest`` and every output file the
    caller reads from it (``files(record)``) exists; else ``None``, and the task is redone."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("digest") != digest:
        return None
    return record if all(Path(f).is_file() for f in files(record)) else None


def backend_name(workers: int, ray_address: str | None) -> str:
    """``in-process`` or ``ray (local)`` / ``ray (ADDRESS)``: what :func:`run_tasks` will use."""
    return "in-process" if workers == 1 and not ray_address else f"ray ({ray_address or 'local'})"


def run_tasks(
    function: Callable[..., T],
    items: Sequence[Any],
    args: tuple[Any, ...],
    *,
    workers: int,
    ray_address: str | None,
    bar: tqdm,
    extra: str,
    deadline: float | None = None,
) -> list[T]:
    """``[function(item, *args) for item in items]``, in completion order.

    Args:
        workers: 1 runs in this process (no Ray); more start a local Ray with that many CPUs, one
            task (one CPU) per item; with ``ray_address`` the tasks go to that cluster.
        bar: advanced by one per finished task.
        extra: the pip extra that installs Ray, named in the error when it is missing.
        deadline: a ``time.monotonic()`` after which no new task starts (those running finish);
            the items not started are simply not in the result.
    """

    def expired() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    if backend_name(workers, ray_address) == "in-process":
        results = []
        for item in items:
            if expired():
                break
            results.append(function(item, *args))
            bar.update(1)
        return results
    try:
        import ray
    except ImportError as err:
        raise InputError(
            f"--workers > 1 and --ray-address run on Ray: pip install -e '.[{extra}]' (or use --workers 1)"
        ) from err
    started = not ray.is_initialized()
    if started:
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(function)
        # a bounded number in flight (twice the CPUs), so a deadline stops the run soon after it passes
        in_flight = 2 * max(int(ray.cluster_resources().get("CPU", workers)), 1)
        queue = list(items)
        pending: list[Any] = []
        results = []
        while queue or pending:
            while queue and len(pending) < in_flight and not expired():
                pending.append(task.remote(queue.pop(0), *args))
            if not pending:
                break
            ready, pending = ray.wait(pending, num_returns=1)
            results.append(ray.get(ready[0]))
            bar.update(1)
        return results
    finally:
        if started:
            ray.shutdown()
