"""FlowEdit: inversion-free editing by integrating the difference of two flows.

Kulikov et al. 2024, "FlowEdit: Inversion-Free Text-Based Editing Using Pre-Trained Flow Models"
(arXiv:2412.08629). The edit ``z`` starts at the clean source and follows, from noise level
``sigmas[N - n_max]`` down, the ODE::

    dz/dsigma = E_noise[ v_tgt(z_tgt, sigma) - v_src(z_src, sigma) ]
    z_src = (1 - sigma) x_src + sigma * noise,      z_tgt = z_src + (z - x_src)

estimated with ``n_avg`` noise draws per step and integrated with Euler; source and target
velocities (each with its own CFG scale) are one batched model call. The last ``n_min`` steps are
regular sampling of the target from ``z_tgt`` at that level. No inversion: the source never has to
be mapped to noise, so there is no inversion error to carry.

Properties (tested): with ``n_max = 0`` the result is the source; with target = source (prompt,
CFG, first frame) the velocity difference is exactly zero and the result is the source, bit-exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flowstudio.core.flow import add_noise
from flowstudio.core.solvers import EulerSolver, Solver
from flowstudio.edit.context import ContextSync
from flowstudio.edit.job import EditJob
from flowstudio.edit.paired import Request
from flowstudio.errors import InputError
from flowstudio.sampling import run_loop


@dataclass(frozen=True)
class FlowEditConfig:
    """FlowEdit settings (names as in the paper's reference code).

    Attributes:
        n_max: number of final grid steps the edit runs over (``None``: all); the edit starts at
            noise level ``sigmas[N - n_max]``. 0 returns the source.
        n_min: of those, the last ``n_min`` are regular target sampling instead of the difference ODE.
        n_avg: noise draws averaged per step (each one batched model call).
    """

    n_max: int | None = None
    n_min: int = 0
    n_avg: int = 1

    def __post_init__(self) -> None:
        if self.n_max is not None and self.n_max < 0:
            raise InputError(f"n_max must be >= 0 or None, got {self.n_max}")
        if self.n_min < 0:
            raise InputError(f"n_min must be >= 0, got {self.n_min}")
        if self.n_avg < 1:
            raise InputError(f"n_avg must be >= 1, got {self.n_avg}")


@torch.no_grad()
def run_flowedit(job: EditJob, config: FlowEditConfig, tail_solver: Solver | None = None) -> torch.Tensor:
    """FlowEdit on ``job``; returns the edited latent ``(1, C, T, H, W)``."""
    sigmas, x_src = job.sigmas, job.x_src
    n = len(sigmas) - 1
    n_max = n if config.n_max is None else min(config.n_max, n)
    n_min = min(config.n_min, n_max)
    if n_max == 0:
        return x_src.clone()
    first, tail_start = n - n_max, n - n_min

    def noise() -> torch.Tensor:
        return torch.randn(x_src.shape, generator=job.generator).to(x_src)

    def delta(z: torch.Tensor, sigma: float) -> torch.Tensor:
        total = None
        for _ in range(config.n_avg):
            z_src = add_noise(x_src, noise(), sigma)
            z_tgt = z_src + (z - x_src)
            v = job.denoiser.velocities(
                [Request("src", z_src, job.source), Request("tgt", z_tgt, job.target)], sigma
            )
            d = v["tgt"] - v["src"]
            total = d if total is None else total + d
        return total if config.n_avg == 1 else total / config.n_avg

    z = x_src
    if tail_start > first:
        z = run_loop(
            delta,
            x_src,
            sigmas[first : tail_start + 1],
            EulerSolver(),
            controllers=[
                ContextSync(job.context, phase="edit", total=n_max),
                *job.feature_controls,
                *job.blend_controllers(lambda sigma: x_src),
                *job.observers,
            ],
            pin=job.pin(job.target),
            model=job.model,
            extras={"edit_context": job.context},
            progress=job.progress,
            description="flowedit",
        ).x
    if n_min == 0:
        return z

    # Regular sampling of the target for the last n_min steps, from z_tgt at that noise level.
    tail = sigmas[tail_start:]
    fresh = noise()

    def source_at(sigma: float) -> torch.Tensor:
        return add_noise(x_src, fresh, sigma)

    x_tgt = source_at(float(tail[0])) + (z - x_src)
    return run_loop(
        job.target_velocity(source_at),
        x_tgt,
        tail,
        tail_solver or EulerSolver(),
        controllers=[
            ContextSync(job.context, phase="edit", offset=n_max - n_min, total=n_max),
            *job.feature_controls,
            *job.blend_controllers(source_at),
            *job.observers,
        ],
        pin=job.pin(job.target),
        model=job.model,
        extras={"edit_context": job.context},
        progress=job.progress,
        description="flowedit tail",
    ).x
