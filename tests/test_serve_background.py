"""The background-loop lifecycle shared by the job worker and the board's scorer: setup once on the
loop's thread, steps until stop, idle waits cut short by ``wake``, ``stop`` joins; an exception that
escapes a step is logged and retried after a doubling back-off, and only ``max_failures`` in a row
(or a failed setup) end the loop, logged, with ``alive`` turned ``False``."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from flowstudio.serve.background import BackgroundLoop


class Counting(BackgroundLoop):
    """Does work on the first ``busy`` steps, then idles; raises on the steps in ``fail_at``."""

    def __init__(
        self,
        busy: int = 0,
        fail_at: set[int] | None = None,
        idle_wait: float = 60.0,
        setup_fails: bool = False,
        **retry: float,
    ) -> None:
        super().__init__("test-loop", idle_wait=idle_wait, **retry)
        self.busy, self.fail_at, self.setup_fails = busy, fail_at or set(), setup_fails
        self.steps = 0
        self.setup_threads: list[str] = []
        self.stepped = threading.Event()

    def setup(self) -> None:
        self.setup_threads.append(threading.current_thread().name)
        if self.setup_fails:
            raise OSError("no model here")

    def step(self) -> bool:
        self.steps += 1
        self.stepped.set()
        if self.steps in self.fail_at:
            raise RuntimeError(f"boom in step {self.steps}")
        return self.steps <= self.busy


def _wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_setup_runs_once_on_the_loop_thread_then_busy_steps_run_back_to_back():
    loop = Counting(busy=3)
    assert not loop.alive, "a loop is not alive before start"
    loop.start()
    # three busy steps, then the fourth finds nothing and the loop idles (idle_wait 60 s)
    assert _wait_for(lambda: loop.steps == 4), f"steps: {loop.steps}"
    time.sleep(0.05)
    assert loop.steps == 4, "an idle step must make the loop wait, not spin"
    assert loop.alive
    assert loop.setup_threads == ["test-loop"]
    loop.stop(timeout=5)
    assert not loop.alive, "stop joins the thread"


def test_wake_cuts_the_idle_wait_short():
    loop = Counting(busy=0, idle_wait=60.0)
    loop.start()
    assert _wait_for(lambda: loop.steps == 1)
    started = time.monotonic()
    loop.wake.set()
    assert _wait_for(lambda: loop.steps == 2, timeout=2.0), "wake did not start the next step"
    assert time.monotonic() - started < 2.0
    loop.stop(timeout=5)
    assert not loop.alive


def test_stop_ends_an_idle_loop_at_once_and_is_safe_before_start():
    never_started = Counting()
    never_started.stop(timeout=1)  # nothing to join: returns without error
    assert not never_started.alive

    loop = Counting(idle_wait=60.0)
    loop.start()
    assert loop.stepped.wait(5)
    started = time.monotonic()
    loop.stop(timeout=5)
    assert time.monotonic() - started < 2.0, "stop must wake the idle wait, not sit out its 60 s"
    assert not loop.alive
    steps = loop.steps
    time.sleep(0.05)
    assert loop.steps == steps, "no step after stop"


def _records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "flowstudio.serve.background"]


def test_a_failing_step_is_retried_after_a_back_off_and_a_success_resets_the_streak(caplog):
    # steps 2 and 3 fail (a streak of two), step 4 succeeds, step 6 fails once more
    loop = Counting(busy=10, fail_at={2, 3, 6}, retry_wait=0.01, max_failures=3)
    with caplog.at_level(logging.ERROR, logger="flowstudio.serve.background"):
        loop.start()
        assert _wait_for(lambda: loop.steps >= 11), f"steps: {loop.steps}"
    assert loop.alive, "failures below max_failures in a row must not end the loop"
    assert loop.failures == 0, "the success after step 6 resets the streak"
    assert loop.last_error == "RuntimeError: boom in step 6", "the latest error is kept for /healthz"
    records = _records(caplog)
    assert len(records) == 3, [r.getMessage() for r in records]
    assert "(1 in a row; it stops at 3)" in records[0].getMessage()
    assert "(2 in a row; it stops at 3)" in records[1].getMessage()
    assert "(1 in a row; it stops at 3)" in records[2].getMessage(), "the streak restarted at 1"
    assert all(r.exc_info is not None for r in records), "each failure is logged with its traceback"
    loop.stop(timeout=5)
    assert not loop.alive


def test_max_failures_in_a_row_end_the_loop_logged(caplog):
    loop = Counting(busy=10, fail_at={2, 3, 4, 5, 6}, retry_wait=0.001, max_failures=4)
    with caplog.at_level(logging.ERROR, logger="flowstudio.serve.background"):
        loop.start()
        loop.thread.join(5)
    assert not loop.alive, "the loop ends, so /healthz reports a dead worker"
    assert loop.steps == 5, "steps 2..5 failed (4 in a row): no step after the fourth"
    assert loop.failures == 4 and loop.last_error == "RuntimeError: boom in step 5"
    last = _records(caplog)[-1]
    assert "test-loop stopped after 4 failures in a row" in last.getMessage()
    assert last.exc_info is not None and "boom in step 5" in str(last.exc_info[1])


def test_a_failed_setup_ends_the_loop_before_any_step(caplog):
    loop = Counting(busy=10, setup_fails=True)
    with caplog.at_level(logging.ERROR, logger="flowstudio.serve.background"):
        loop.start()
        loop.thread.join(5)
    assert not loop.alive and loop.steps == 0
    assert loop.last_error == "OSError: no model here"
    assert "test-loop stopped: its setup failed" in _records(caplog)[-1].getMessage()


def test_the_back_off_doubles_up_to_its_cap_and_stop_cuts_it_short():
    loop = Counting(busy=10, fail_at={1}, retry_wait=0.5, max_retry_wait=4.0, max_failures=100)
    assert [loop.retry_delay(k) for k in (1, 2, 3, 4, 5, 9)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    slow = Counting(busy=10, fail_at={1}, retry_wait=60.0)
    slow.start()
    assert _wait_for(lambda: slow.failures == 1)
    started = time.monotonic()
    slow.stop(timeout=5)
    assert time.monotonic() - started < 2.0, "stop must not sit out a 60 s back-off"
    assert not slow.alive and slow.steps == 1, "no retry after stop"


def test_max_failures_below_one_is_refused():
    with pytest.raises(ValueError, match="max_failures must be >= 1"):
        BackgroundLoop("x", max_failures=0)
