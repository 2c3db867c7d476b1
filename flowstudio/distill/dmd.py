"""The math of DMD2 (distribution matching distillation) for flow-matching video models.

References: Yin et al., "One-step Diffusion with Distribution Matching Distillation" (DMD, CVPR 2024)
and "Improved Distribution Matching Distillation for Fast Image Synthesis" (DMD2, NeurIPS 2024); the
flow-matching video form follows CausVid / Self-Forcing (Yin et al. 2025, Huang et al. 2025).

Convention (:mod:`flowstudio.core.flow`): ``x_sigma = (1 - sigma) x0 + sigma noise``, the model
predicts the velocity ``v = noise - x0``, so ``x0 = x_sigma - sigma v``.

* The **student** is a few-step sampler: from pure noise it predicts ``x0`` at each of its noise levels
  (:func:`student_sigmas`) and re-noises that prediction with fresh noise to the next level. This is
  diffusers' ``FlowMatchEulerDiscreteScheduler(stochastic_sampling=True)``, so an exported student
  runs in stock ``WanPipeline`` with exactly the training sampler.
* The **generator update** moves the student's sample ``x`` along the difference of two scores at a
  random noise level ``t`` of ``x_t = add_noise(x, noise, t)``: the frozen teacher's ``x0_real``
  (with classifier-free guidance) and the fake-score critic's ``x0_fake`` (which tracks the student's
  own distribution), normalised per sample (:func:`dm_gradient`).
* The **critic update** is plain flow matching on detached student samples (:func:`flow_matching_loss`).

TI2V rows pin latent frame 0 (the clean first-frame latent): the ``mask`` arguments are 0 there, and
every loss and normaliser here leaves those positions out.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from flowstudio.core.flow import add_noise, classifier_free_guidance, shift_sigmas
from flowstudio.core.stochastic import student_scheduler, student_sigmas

__all__ = [
    "backward_simulate",
    "cfg_x0",
    "dm_gradient",
    "dmd_loss",
    "flow_matching_loss",
    "noised",
    "renoise",
    "sample_sigmas",
    "student_scheduler",
    "student_sigmas",
]

X0Fn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x_sigma, sigma, rows) -> x0


def renoise(x0: torch.Tensor, noise: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """The stochastic sampler's move to the next level: the predicted ``x0`` with fresh noise at ``sigma``."""
    return add_noise(x0, noise, sigma)


@torch.no_grad()
def backward_simulate(
    student_x0: X0Fn,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    stop: torch.Tensor,
    seeds: torch.Tensor,
    pin: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """DMD2's backward simulation: each row's input at the student level ``sigmas[stop[b]]``, made by
    the student itself, so the generator trains on the inputs it meets at inference.

    Row ``b`` starts from ``noise[b]`` at ``sigmas[0]`` and takes ``stop[b]`` steps of the student's
    sampler: ``x0 = student_x0(x, sigma, rows)`` (``rows``: the batch indices of the rows given), then
    :func:`renoise` to the next level with noise from its own stream, seeded by ``seeds[b]`` and drawn
    on the CPU. A row's draws depend on nothing but its seed, so a batch split over processes draws
    what the whole batch draws in one process, on any device. ``pin`` puts the clean first-frame
    latent back (TI2V rows)."""
    pin = pin or (lambda z: z)
    x = pin(noise.clone())
    streams = [torch.Generator().manual_seed(int(seed)) for seed in seeds.tolist()]
    for i in range(int(stop.max()) if stop.numel() else 0):
        active = torch.nonzero(stop > i).flatten()
        sigma = torch.full((len(active),), float(sigmas[i]), dtype=torch.float32, device=noise.device)
        x0 = student_x0(x[active], sigma, active)
        fresh = torch.stack(
            [torch.randn(x0.shape[1:], generator=streams[b], dtype=torch.float32) for b in active.tolist()]
        ).to(x0.device)
        x[active] = renoise(x0, fresh, float(sigmas[i + 1])).to(x.dtype)
        x = pin(x)
    return x


def sample_sigmas(
    rows: int, generator: torch.Generator, shift: float, low: float = 0.02, high: float = 0.98
) -> torch.Tensor:
    """Noise levels for the distribution-matching and critic losses: uniform in ``[low, high]`` (DMD2's
    timestep range), warped by the same flow shift as the sampler, float32 ``(rows,)``."""
    u = low + (high - low) * torch.rand(rows, generator=generator, dtype=torch.float64)
    return shift_sigmas(u, shift).float()


def cfg_x0(
    x_t: torch.Tensor, sigma: torch.Tensor, v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float
):
    """The teacher's guided ``x0``: CFG on the velocity, ``v_u + s (v_c - v_u)``, then ``x0 = x - sigma v``.

    ``x0`` is affine in ``v`` at fixed ``x_t`` and ``sigma``, so this equals CFG applied to the two ``x0``
    predictions (or to the noise predictions): one form, stated (tested)."""
    v = classifier_free_guidance(v_cond, v_uncond, scale)
    return x_t - _rows(sigma, x_t) * v


def _rows(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-row ``(B,)`` tensor shaped to broadcast over ``like`` ``(B, ...)``."""
    return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None, per_row: bool) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1 (all, without a mask); per row or overall."""
    dims = tuple(range(1, values.dim())) if per_row else tuple(range(values.dim()))
    if mask is None:
        return values.mean(dim=dims)
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum(dim=dims) / mask.sum(dim=dims).clamp_min(1.0)


def dm_gradient(
    x: torch.Tensor,
    x0_real: torch.Tensor,
    x0_fake: torch.Tensor,
    mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """DMD's distribution-matching gradient for the student sample ``x``, per sample, in float32::

        grad = (x0_fake - x0_real) / mean|x - x0_real|

    The normaliser (the mean over a row's unpinned positions) makes the step size independent of how
    far a sample is from the teacher's prediction (DMD, Eq. 8). Zero on pinned positions."""
    x, x0_real, x0_fake = x.float(), x0_real.float(), x0_fake.float()
    scale = _masked_mean((x - x0_real).abs(), mask, per_row=True).clamp_min(eps)
    grad = (x0_fake - x0_real) / _rows(scale, x)
    grad = torch.nan_to_num(grad)
    return grad if mask is None else grad * mask.to(grad.dtype)


def dmd_loss(x: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """A loss whose gradient with respect to row ``b`` of ``x`` is ``grad[b]`` / (rows x the row's
    unpinned elements)::

        0.5 * mean over rows of mean over the row's unpinned positions of (x - stopgrad(x - grad))^2

    Every row weighs the same, pinned first frame or not, so the mean over a batch split across
    processes (DDP averages their gradients) is the mean over the whole batch. DMD's surrogate:
    back-propagating it pushes the student's sample down ``grad`` (toward the
    teacher's mode and away from the critic's), through the student's weights."""
    target = (x.float() - grad).detach()
    return 0.5 * _masked_mean((x.float() - target).pow(2), mask, per_row=True).mean()


def flow_matching_loss(
    v_pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The critic's (and the teacher's) objective: MSE between the predicted and true velocity
    ``noise - x0`` over each row's unpinned positions, then over rows (each row weighs the same, as
    in :func:`dmd_loss`)."""
    return _masked_mean((v_pred.float() - (noise.float() - x0.float())).pow(2), mask, per_row=True).mean()


def noised(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``add_noise`` with one level per row."""
    return add_noise(x0, noise, _rows(sigma, x0))
