"""Progress of a job as ``progress(step, total, message)`` calls.

The REST server passes a callback that stores the numbers; the CLI passes :func:`console_progress`
(a tqdm bar per phase on stderr). Sampling loops report through :class:`ProgressController`, an
observer on the one loop (it changes nothing the loop computes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flowstudio.sampling import Controller, LoopState

#: ``progress(step, total, message)``: ``step`` of ``total`` done (1-based) in the phase ``message``.
ProgressFn = Callable[[int, int, str], None]


class ProgressController(Controller):
    """Reports every step of a sampling loop as ``progress(step + 1, num_steps, phase)``.

    ``phase`` is ``label`` (or the loop's direction: ``denoise`` / ``invert``).
    """

    def __init__(self, progress: ProgressFn, label: str | None = None) -> None:
        self.progress = progress
        self.label = label

    def after_step(self, state: LoopState) -> None:
        self.progress(state.step + 1, state.num_steps, self.label or state.direction)


@contextmanager
def console_progress(description: str = "") -> Iterator[ProgressFn]:
    """A :data:`ProgressFn` drawing one tqdm bar per phase on stderr; closed on exit."""
    from tqdm.auto import tqdm

    bar: dict[str, tqdm] = {}

    def progress(step: int, total: int, message: str) -> None:
        current = bar.get("bar")
        if current is None or current.desc != f"{description}{message}" or step < current.n:
            if current is not None:
                current.close()
            current = bar["bar"] = tqdm(total=total, desc=f"{description}{message}", leave=False)
        current.update(step - current.n)

    try:
        yield progress
    finally:
        if "bar" in bar:
            bar["bar"].close()
