"""Flow-matching schedules and conversions.

Convention (rectified flow, as Wan2.x and diffusers' FlowMatch schedulers use it)::

    x_sigma = (1 - sigma) * x0 + sigma * noise        sigma in [0, 1]
    v       = d x_sigma / d sigma = noise - x0
    model timestep = num_train_timesteps * sigma      (1000 * sigma)

The shift maps a uniform sigma grid towards high noise as diffusers does
(``FlowMatchEulerDiscreteScheduler``, ``UniPCMultistepScheduler(use_flow_sigmas=True)``)::

    sigma' = shift * sigma / (1 + (shift - 1) * sigma)
"""

from __future__ import annotations

import math

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000
# diffusers' UniPC nudges a first sigma of exactly 1 down by this much so that
# log(alpha) = log(1 - sigma) stays finite; we do the same to agree with it.
SIGMA_ONE_NUDGE = 1e-6


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Apply the flow shift ``shift * s / (1 + (shift - 1) * s)`` elementwise."""
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def flow_sigmas(
    num_steps: int,
    shift: float = 5.0,
    *,
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS,
    final_sigma: float = 0.0,
) -> torch.Tensor:
    """Sigmas for ``num_steps`` denoising steps, shape ``(num_steps + 1,)``, descending to ``final_sigma``.

    Identical to ``UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=shift).sigmas``
    (the schedule Wan2.2's shipped scheduler config produces), in float64 for exact step math.
    The base grid is ``numpy.linspace``, as diffusers computes it, not ``torch.linspace``: the two
    differ in the last bit, and that bit decides some integer timesteps (:func:`model_timestep`).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    base = torch.from_numpy(np.linspace(1.0, 1.0 / num_train_timesteps, num_steps + 1)[:-1].copy())
    sigmas = shift_sigmas(base, shift)
    if abs(float(sigmas[0]) - 1.0) < SIGMA_ONE_NUDGE:
        sigmas[0] -= SIGMA_ONE_NUDGE
    return torch.cat([sigmas, torch.tensor([final_sigma], dtype=torch.float64)])


def invert_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """The inversion schedule of a denoising schedule: the same grid walked from low to high noise."""
    return torch.flip(sigmas, dims=[0])


def truncate_sigmas(sigmas: torch.Tensor, strength: float) -> torch.Tensor:
    """Keep the tail of a descending schedule that starts at noise level ``<= strength``.

    ``strength`` 1.0 keeps everything; 0.5 starts half-way down in sigma (partial inversion /
    SDEdit-style editing strength).
    """
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    keep = sigmas[:-1] <= strength + 1e-12
    first = int(torch.nonzero(keep)[0]) if bool(keep.any()) else len(sigmas) - 2
    return sigmas[first:]


def timesteps_from_sigmas(
    sigmas: torch.Tensor, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
) -> torch.Tensor:
    """Model timesteps for the given sigmas (``1000 * sigma``), float."""
    return sigmas * num_train_timesteps


def model_timestep(
    sigma: float, *, integer: bool = False, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS
) -> float:
    """The timestep the transformer is fed at noise level ``sigma``: ``1000 * sigma``.

    ``integer=True`` truncates it to a whole number, as diffusers' Wan pipelines do with the
    UniPC / DPM-Solver schedulers: they compute ``timesteps = sigmas * 1000`` in float64 and cast
    them to ``int64`` (``floor`` for sigma >= 0), while the solver itself keeps the float sigmas.
    The truncation only moves the model's time embedding by < 1 unit; it is what stock
    ``WanPipeline`` (and Wan2.2's own sampler) does, so ``integer=True`` reproduces it exactly.
    Inversion and editing need the exact float timestep (:mod:`flowstudio.edit`), so they keep
    ``integer=False``.
    """
    t = sigma * num_train_timesteps
    return float(math.floor(t)) if integer else t


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """``x_sigma = (1 - sigma) * x0 + sigma * noise``."""
    return (1 - sigma) * x0 + sigma * noise


def x0_from_velocity(x: torch.Tensor, sigma: float | torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Clean-sample prediction ``x0 = x_sigma - sigma * v``."""
    return x - sigma * v


def noise_from_velocity(x: torch.Tensor, sigma: float | torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Noise prediction ``noise = x_sigma + (1 - sigma) * v``."""
    return x + (1 - sigma) * v


def velocity_from_x0_noise(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Target velocity ``v = noise - x0``."""
    return noise - x0


def classifier_free_guidance(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """``uncond + scale * (cond - uncond)``; scale 1 returns ``cond`` (no guidance)."""
    if scale == 1.0:
        return cond
    return uncond + scale * (cond - uncond)
