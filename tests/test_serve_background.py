"""The background-loop lifecycle shared by the job worker and the board's scorer: setup once on the
loop's thread, steps until stop, idle waits cut short by ``wake``, ``stop`` joins, and an exception
that escapes a step ends the loop, logged, with ``alive`` turned ``False``."""

from __future__ import annotations

import logging
import threading
import time

from flowstudio.serve.background import BackgroundLoop


class Counting(BackgroundLoop):
    """Does work on the first ``busy`` steps, then idles; raises on step ``fail_at`` if given."""

    def __init__(self, busy: int = 0, fail_at: int | None = None, idle_wait: float = 60.0) -> None:
        super().__init__("test-loop", idle_wait=idle_wait)
        self.busy, self.fail_at = busy, fail_at
        self.steps = 0
        self.setup_threads: list[str] = []
        self.stepped = threading.Event()

    def setup(self) -> None:
        self.setup_threads.append(threading.current_thread().name)

    def step(self) -> bool:
        self.steps += 1
        self.stepped.set()
        if self.fail_at is not None and self.steps == self.fail_at:
            raise RuntimeError("boom in a step")
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


def test_an_exception_escaping_a_step_ends_the_loop_logged(caplog):
    loop = Counting(busy=10, fail_at=2)
    with caplog.at_level(logging.ERROR, logger="flowstudio.serve.background"):
        loop.start()
        loop.thread.join(5)
    assert not loop.alive, "the loop ends, so /healthz reports a dead worker"
    assert loop.steps == 2, "no step after the failing one"
    records = [r for r in caplog.records if r.name == "flowstudio.serve.background"]
    assert len(records) == 1 and "test-loop stopped" in records[0].getMessage()
    assert records[0].exc_info is not None and "boom in a step" in str(records[0].exc_info[1])
