"""One background thread that repeats a unit of work: the lifecycle the job worker and the board's
scorer share.

A subclass says what one iteration does (:meth:`BackgroundLoop.step`, ``True`` when it did work) and,
optionally, what runs once on the thread first (:meth:`BackgroundLoop.setup`: the job worker loads
its model there, so that a slow load never blocks the server's start). When a step finds nothing to
do, the loop sleeps up to ``idle_wait`` seconds or until :attr:`wake` is set (the API sets it when it
queues something, so a new job starts at once instead of at the next poll).

A step is expected to catch its own failures (a failed job is stored as failed, and the loop goes
on). An exception that escapes a step ends the loop: it is logged and :attr:`alive` turns ``False``,
so ``/healthz`` reports a dead worker instead of one that silently fails on every iteration.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class BackgroundLoop:
    """A daemon thread running :meth:`step` until :meth:`stop`.

    Args:
        name: the thread's name (shown in logs and thread dumps).
        idle_wait: seconds to sleep after a step that found nothing to do (unless woken sooner).
    """

    def __init__(self, name: str, idle_wait: float = 1.0) -> None:
        self.idle_wait = idle_wait
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to end after its current step and wait up to ``timeout`` seconds for it."""
        self.stopping.set()
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def setup(self) -> None:
        """Runs once on the loop's thread before the first step (nothing by default)."""

    def step(self) -> bool:
        """One unit of work; ``False`` when there was nothing to do (the loop then idles)."""
        raise NotImplementedError

    def _loop(self) -> None:
        try:
            self.setup()
            while not self.stopping.is_set():
                if not self.step():
                    self.wake.wait(self.idle_wait)
                    self.wake.clear()
        except Exception:  # noqa: BLE001 - logged here rather than by threading's excepthook
            log.exception("%s stopped on an unexpected error", self.thread.name)
