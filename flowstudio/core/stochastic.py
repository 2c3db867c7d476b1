"""The few-step stochastic sampler of DMD students, and the noise levels it walks.

A distilled student predicts the clean latent ``x0 = x - sigma v`` at each of its few levels and
re-noises it with *fresh* noise to the next level (DMD2's / CausVid's sampler)::

    x_next = (1 - sigma_next) x0 + sigma_next noise

This is diffusers' ``FlowMatchEulerDiscreteScheduler(stochastic_sampling=True)``; an exported student
carries that scheduler (:mod:`flowstudio.distill.export`), and :func:`student_sigmas` is the list its
``set_timesteps(steps)`` gives, so our sampler, the training loop and stock ``WanPipeline`` walk the
same levels. flowstudio draws the fresh noise from the generator that drew the starting noise, continuing
its stream. Stock ``WanPipeline`` does not pass its ``generator`` to ``scheduler.step``, so its fresh
noise comes from torch's global RNG: with the global state set to that generator's after the starting
draw, the two samples agree to float rounding (tested).

Importing this module registers the ``dmd`` solver in :data:`flowstudio.core.solvers.SOLVERS`.
"""

from __future__ import annotations

import torch

from flowstudio.core.flow import shift_sigmas
from flowstudio.core.solvers import SOLVERS, Solver, VelocityFn


def student_scheduler(steps: int, shift: float):
    """diffusers' stochastic flow-matching Euler scheduler of a ``steps``-step student.

    ``FlowMatchEulerDiscreteScheduler(shift=shift, shift_terminal=shift_sigmas(1 / steps),
    stochastic_sampling=True)`` with ``steps`` set: its ``sigmas[:-1]`` are the student's levels.

    Why ``shift_terminal``: without it the scheduler's last level for 4 steps at shift 5 is 0.024 (a step
    spent on an almost clean input). Stretched to end at the warped uniform level ``shift(1 / steps)``
    (0.625 for 4 steps at shift 5, where Self-Forcing's warped list [1000, 937.5, 833, 625] ends), the
    list is 1, 0.965, 0.891, 0.625; for 8 steps it ends at 0.417."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if steps < 1:
        raise ValueError(f"a student needs at least 1 step, got {steps}")
    terminal = None
    if steps > 1:
        terminal = float(shift_sigmas(torch.tensor(1.0 / steps, dtype=torch.float64), shift))
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=shift, shift_terminal=terminal, stochastic_sampling=True
    )
    scheduler.set_timesteps(steps)
    return scheduler


def student_sigmas(steps: int, shift: float) -> torch.Tensor:
    """The ``steps`` levels a student denoises from, descending from 1, warped by the flow shift (float64)."""
    return student_scheduler(steps, shift).sigmas[:-1].double()


def student_grid(steps: int, shift: float) -> torch.Tensor:
    """:func:`student_sigmas` with the final level 0: the grid the sampling loop walks."""
    return torch.cat([student_sigmas(steps, shift), torch.zeros(1, dtype=torch.float64)])


class StochasticSolver(Solver):
    """``x0 = x - sigma v``, then fresh noise to the next level; one model call per step.

    ``generator``: where the fresh noise comes from (drawn on the CPU in float32, then moved, as
    diffusers' ``randn_tensor`` does for a CPU generator); ``seed`` makes one when none is given. Noise
    is drawn at every step, the last (to level 0) included, exactly as diffusers does, so the stream
    stays aligned with it. Cannot invert: the map from ``x`` to ``x_next`` is random."""

    name = "dmd"
    order = 1

    def __init__(self, generator: torch.Generator | None = None, seed: int = 0) -> None:
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)

    def grid(self, steps: int, shift: float) -> torch.Tensor:
        """The student's own levels (:func:`student_grid`), not the teacher's flow grid."""
        return student_grid(steps, shift)

    def step(self, velocity_fn: VelocityFn, x: torch.Tensor, sigmas: torch.Tensor, i: int) -> torch.Tensor:
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = x - sigma * velocity_fn(x, sigma)
        noise = torch.randn(x.shape, generator=self.generator, dtype=torch.float32).to(x.device, x.dtype)
        return (1.0 - sigma_next) * x0 + sigma_next * noise

    def invert_step(
        self, velocity_fn: VelocityFn, x: torch.Tensor, sigmas: torch.Tensor, i: int
    ) -> torch.Tensor:
        raise ValueError(
            "the dmd sampler is stochastic and cannot invert; invert with euler, unipc, rf-solver or fireflow"
        )


SOLVERS[StochasticSolver.name] = StochasticSolver
