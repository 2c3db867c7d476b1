"""Inversion editors: invert the source with the source prompt, regenerate with the target prompt.

This is the baseline editor (DPM-Solver++ inversion, UniPC regeneration) and, with other solvers,
the RF-Solver (midpoint both ways) and FireFlow (midpoint with velocity reuse both ways) editors::

    1. invert   x_src --(source prompt, source first frame, source CFG; inversion solver)--> x_T
    2. edit     x_T   --(target prompt, target first frame, target CFG; generation solver)--> x_edit

While inverting, the source latent at every grid point is kept (a :class:`SourceTrajectory`, one
latent per step): blending reads it, recompute-mode controls evaluate the source there, and
cache-mode controls record their source features during this same pass. With
``reschedule.mode == "noise"`` step 1 is replaced by fresh noise at the first sigma (SDEdit).
"""

from __future__ import annotations

import logging

import torch

from flowstudio.core.flow import add_noise
from flowstudio.core.solvers import Solver
from flowstudio.edit.context import ContextSync, SourceTrajectory
from flowstudio.edit.job import EditJob
from flowstudio.sampling import run_loop

logger = logging.getLogger(__name__)

#: Default (inversion, generation) solvers of each inversion method.
METHOD_SOLVERS: dict[str, tuple[str, str]] = {
    "inversion": ("dpm++2m", "unipc"),
    "rf-solver": ("rf-solver", "rf-solver"),
    "fireflow": ("fireflow", "fireflow"),
}


@torch.no_grad()
def run_inversion_edit(
    job: EditJob, inversion_solver: Solver, generation_solver: Solver, *, start: str = "invert"
) -> torch.Tensor:
    """Invert (or renoise) the source, then regenerate under the target; returns ``(1, C, T, H, W)``."""
    sigmas = job.sigmas
    trajectory = SourceTrajectory(sigmas, job.x_src, device=job.trajectory_device)
    calls_before = job.denoiser.row_evaluations

    # 1. source -> noise at sigmas[0]
    if start == "invert":
        recorders = [c for c in job.feature_controls if c.store is not None]
        state = run_loop(
            job.denoiser.side_fn("src", job.source),
            job.x_src,
            sigmas,
            inversion_solver,
            direction="invert",
            controllers=[
                ContextSync(job.context, phase="source"),
                trajectory.recorder(),
                *recorders,
                *job.observers,
            ],
            pin=job.pin(job.source),
            model=job.model,
            extras={"edit_context": job.context},
            progress=job.progress,
            description="invert",
        )
        x_start = state.x
    else:
        noise = torch.randn(job.x_src.shape, generator=job.generator).to(job.x_src)
        for i, sigma in enumerate(sigmas[:-1].tolist()):
            trajectory._set(i, add_noise(job.x_src, noise, sigma))
        x_start = trajectory.at(float(sigmas[0]), device=job.x_src.device)
    job.extras["inversion_row_evaluations"] = job.denoiser.row_evaluations - calls_before

    # 2. noise -> edit, under the target
    calls_before = job.denoiser.row_evaluations
    device = job.x_src.device
    state = run_loop(
        job.target_velocity(lambda sigma: trajectory.at(sigma, device=device)),
        x_start,
        sigmas,
        generation_solver,
        controllers=[
            ContextSync(job.context, phase="edit"),
            *job.feature_controls,
            *job.blend_controllers(lambda sigma: trajectory.at(sigma, device=device)),
            *job.observers,
        ],
        pin=job.pin(job.target),
        model=job.model,
        extras={"edit_context": job.context},
        progress=job.progress,
        description="edit",
    )
    job.extras["edit_row_evaluations"] = job.denoiser.row_evaluations - calls_before
    job.extras["trajectory_bytes"] = trajectory.nbytes
    return state.x
