"""One background thread that repeats a unit of work: the lifecycle the job worker and the board's
scorer share.

A subclass says what one iteration does (:meth:`BackgroundLoop.step`, ``True`` when it did work) and,
optionally, what runs once on the thread first (:meth:`BackgroundLoop.setup`: the job worker loads
its model there, so that a slow load never blocks the server's start). When a step finds nothing to
do, the loop sleeps up to ``idle_wait`` seconds or until :attr:`wake` is set (the API sets it when it
queues something, so a new job starts at once instead of at the next poll).

A step is expected to catch its own failures (a failed job is stored as failed, and the loop goes
on). An exception that escapes a step is most often transient (the database restarted, a lock timed
out, the disk filled for a moment), so it does not end the loop at once: it is logged, kept in
:attr:`last_error`, and the step is retried after a back-off that doubles from ``retry_wait`` up to
``max_retry_wait`` seconds (a success resets it). Only ``max_failures`` failures in a row end the
loop: it is logged and :attr:`alive` turns ``False``, so ``/healthz`` reports a dead worker instead
of one that silently fails on every iteration. An exception that escapes :meth:`setup` ends the loop
at once (nothing would go better on a retry of the same load).
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
        retry_wait: seconds before the first retry of a step that raised; doubled after every
            further failure in a row.
        max_retry_wait: the longest wait between two retries.
        max_failures: failures in a row that end the loop.
    """

    def __init__(
        self,
        name: str,
        idle_wait: float = 1.0,
        retry_wait: float = 1.0,
        max_retry_wait: float = 60.0,
        max_failures: int = 8,
    ) -> None:
        if max_failures < 1:
            raise ValueError(f"max_failures must be >= 1; got {max_failures}")
        self.idle_wait = idle_wait
        self.retry_wait, self.max_retry_wait, self.max_failures = retry_wait, max_retry_wait, max_failures
        self.failures = 0  # failures in a row of the current streak (0 after any success)
        self.last_error: str | None = None  # the latest escaped exception, kept after a success
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

    def retry_delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1-based)."""
        return min(self.max_retry_wait, self.retry_wait * 2 ** (failures - 1))

    def _loop(self) -> None:
        name = self.thread.name
        try:
            self.setup()
        except Exception as error:  # noqa: BLE001 - logged here rather than by threading's excepthook
            self.last_error = f"{type(error).__name__}: {error}"
            log.exception("%s stopped: its setup failed", name)
            return
        while not self.stopping.is_set():
            try:
                worked = self.step()
            except Exception as error:  # noqa: BLE001 - logged, retried, and kept for /healthz
                self.failures += 1
                self.last_error = f"{type(error).__name__}: {error}"
                if self.failures >= self.max_failures:
                    log.exception("%s stopped after %d failures in a row", name, self.failures)
                    return
                delay = self.retry_delay(self.failures)
                log.exception(
                    "%s: a step failed (%d in a row; it stops at %d), retrying in %.3g s",
                    name,
                    self.failures,
                    self.max_failures,
                    delay,
                )
                self.stopping.wait(delay)  # stop() cuts the back-off short
                continue
            self.failures = 0
            if not worked:
                self.wake.wait(self.idle_wait)
                self.wake.clear()
