"""Solver math: agreement with diffusers' schedulers, order of accuracy, inversion."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from flowstudio.core import flow_sigmas, make_solver, shift_sigmas
from flowstudio.core.solvers import DPMSolverPP2M, EulerSolver, UniPCSolver
from flowstudio.sampling import invert, sample

# A data distribution with a closed-form flow: x0 ~ N(MU, S^2) per element, noise ~ N(0, 1).
# The marginal at sigma is N(MU (1 - sigma), std(sigma)^2), std(sigma)^2 = (1 - sigma)^2 S^2 + sigma^2,
# and the probability-flow ODE maps x_a to x_b = MU (1 - b) + (x_a - MU (1 - a)) std(b) / std(a).
MU, S = 0.7, 0.3


def _std(sigma: float) -> float:
    return math.sqrt((1 - sigma) ** 2 * S**2 + sigma**2)


def gaussian_velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Exact velocity of the Gaussian flow: v = -MU + (x - MU (1 - sigma)) * std'(sigma) / std(sigma)."""
    dstd = (-(1 - sigma) * S**2 + sigma) / _std(sigma)
    return -MU + (x - MU * (1 - sigma)) * dstd / _std(sigma)


def gaussian_flow(x: torch.Tensor, a: float, b: float) -> torch.Tensor:
    return MU * (1 - b) + (x - MU * (1 - a)) * _std(b) / _std(a)


def nonlinear_velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A smooth field that depends nonlinearly on x and sigma, for agreement tests."""
    return torch.sin(x * 1.3 + sigma) * (1 + sigma) - 0.5 * x


@pytest.fixture
def x_start() -> torch.Tensor:
    return torch.randn(2, 4, 3, 5, 5, generator=torch.Generator().manual_seed(0))


def test_flow_sigmas_equal_unipc_flow_sigmas():
    for steps, shift in [(10, 5.0), (30, 3.0), (7, 1.0)]:
        sched = UniPCMultistepScheduler(
            use_flow_sigmas=True, flow_shift=shift, prediction_type="flow_prediction"
        )
        sched.set_timesteps(steps)
        ours = flow_sigmas(steps, shift)
        assert torch.allclose(ours.float(), sched.sigmas, atol=1e-6), (ours, sched.sigmas)


def test_shift_formula():
    s = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    # sigma' = shift * s / (1 + (shift - 1) * s): endpoints fixed, interior pushed towards noise
    out = shift_sigmas(s, 3.0)
    assert out[0] == 0 and out[-1] == 1
    assert torch.allclose(out[1:3], torch.tensor([0.5, 0.75], dtype=torch.float64))


def _run_diffusers(scheduler, x: torch.Tensor) -> list[torch.Tensor]:
    trajectory = []
    for t, sigma in zip(scheduler.timesteps, scheduler.sigmas[:-1], strict=True):
        v = nonlinear_velocity(x, float(sigma))
        x = scheduler.step(v, t, x, return_dict=False)[0]
        trajectory.append(x)
    return trajectory


def _run_ours(solver, sigmas: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
    trajectory = []
    solver.reset()
    for i in range(len(sigmas) - 1):
        x = solver.step(nonlinear_velocity, x, sigmas, i)
        trajectory.append(x)
    return trajectory


def _assert_trajectories_agree(ours, theirs, atol=1e-5):
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        err = (a - b).abs().max().item()
        assert err < atol, f"step {i}: max |ours - diffusers| = {err:.2e} >= {atol}"


def test_euler_agrees_with_flowmatch_euler(x_start):
    sched = FlowMatchEulerDiscreteScheduler(shift=5.0)
    sched.set_timesteps(12)
    ours = _run_ours(EulerSolver(), sched.sigmas.double(), x_start)
    _assert_trajectories_agree(ours, _run_diffusers(sched, x_start))


@pytest.mark.parametrize("steps", [6, 20])
def test_dpmpp2m_agrees_with_diffusers(x_start, steps):
    sched = DPMSolverMultistepScheduler(
        use_flow_sigmas=True,
        flow_shift=3.0,
        prediction_type="flow_prediction",
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
    )
    sched.set_timesteps(steps)
    ours = _run_ours(DPMSolverPP2M(), sched.sigmas.double(), x_start)
    _assert_trajectories_agree(ours, _run_diffusers(sched, x_start))


@pytest.mark.parametrize(
    ("order", "variant", "steps"),
    [(2, "bh2", 8), (2, "bh2", 25), (3, "bh2", 10), (3, "bh1", 10), (1, "bh2", 6)],
)
def test_unipc_agrees_with_diffusers(x_start, order, variant, steps):
    sched = UniPCMultistepScheduler(
        use_flow_sigmas=True,
        flow_shift=5.0,
        prediction_type="flow_prediction",
        solver_order=order,
        solver_type=variant,
    )
    sched.set_timesteps(steps)
    ours = _run_ours(UniPCSolver(order=order, variant=variant), sched.sigmas.double(), x_start)
    theirs = _run_diffusers(sched, x_start)
    if variant == "bh1":
        # diffusers' bh1 computes B(h) = -h = -inf on the final step to sigma 0 and returns NaN there;
        # we take the exact first-order limit (the x0 prediction) instead.
        assert torch.isnan(theirs[-1]).all() and torch.isfinite(ours[-1]).all()
        ours, theirs = ours[:-1], theirs[:-1]
    _assert_trajectories_agree(ours, theirs)


def _global_error(solver, steps: int, x_start: torch.Tensor) -> float:
    # An interior grid: the endpoints sigma = 0 / 1 are first-order by design (lambda is infinite there).
    sigmas = torch.linspace(0.95, 0.05, steps + 1, dtype=torch.float64)
    x = x_start.double()
    solver.reset()
    for i in range(steps):
        x = solver.step(gaussian_velocity, x, sigmas, i)
    exact = gaussian_flow(x_start.double(), float(sigmas[0]), float(sigmas[-1]))
    return (x - exact).abs().max().item()


@pytest.mark.parametrize(("name", "expected_order"), [("euler", 1), ("dpm++2m", 2), ("unipc", 2)])
def test_order_of_accuracy(name, expected_order, x_start):
    """Error ~ C * steps^-p: doubling the steps divides the error by ~2^p."""
    errors = [_global_error(make_solver(name), n, x_start) for n in (16, 32, 64, 128)]
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:], strict=False)]
    assert min(rates) > expected_order - 0.35, (
        f"{name}: observed rates {rates} (errors {errors}), expected ~{expected_order} (err ~ steps^-p)"
    )


@pytest.mark.parametrize("name", ["euler", "dpm++2m", "unipc"])
def test_full_flow_schedule_converges(name, x_start):
    """On the shipped schedule (1 - 1e-6 -> 0, shifted) the solution converges to the exact flow."""

    def error(steps: int) -> float:
        sigmas = flow_sigmas(steps, 2.0)
        solver, x = make_solver(name), x_start.double()
        for i in range(steps):
            x = solver.step(gaussian_velocity, x, sigmas, i)
        return (x - gaussian_flow(x_start.double(), float(sigmas[0]), 0.0)).abs().max().item()

    assert error(128) < error(16) / 6


def test_euler_inversion_is_exact_for_x_independent_field(x_start):
    """Euler inversion x_i = x_{i+1} - (s_{i+1} - s_i) f(s_i) undoes x_{i+1} = x_i + (...) f(s_i)."""

    def field(x, sigma):
        return torch.full_like(x, math.cos(3 * sigma)) + torch.linspace(0, 1, x.shape[-1]) * sigma

    sigmas = flow_sigmas(10, 5.0)
    data = x_start.double()
    noise = invert(field, data, sigmas, EulerSolver())
    back = sample(field, noise, sigmas, EulerSolver())
    assert torch.allclose(back, data, atol=1e-12, rtol=0), (back - data).abs().max()


@pytest.mark.parametrize("name", ["euler", "dpm++2m", "unipc"])
def test_roundtrip_error_falls_with_steps(name, x_start):
    """Inversion then regeneration reconstructs better as the grid refines (Gaussian flow)."""
    data = gaussian_flow(x_start.double(), 1.0, 0.0)  # a sample of the data distribution

    def roundtrip_error(steps: int) -> float:
        sigmas = flow_sigmas(steps, 3.0)
        noise = invert(gaussian_velocity, data, sigmas, make_solver(name))
        return (sample(gaussian_velocity, noise, sigmas, make_solver(name)) - data).abs().max().item()

    coarse, fine = roundtrip_error(10), roundtrip_error(40)
    assert fine < coarse / 3, f"{name}: roundtrip error {coarse:.2e} at 10 steps, {fine:.2e} at 40"


def test_euler_fixed_point_inversion_reduces_error(x_start):
    data = gaussian_flow(x_start.double(), 1.0, 0.0)
    sigmas = flow_sigmas(8, 3.0)
    errs = []
    for iters in (0, 3):
        noise = invert(gaussian_velocity, data, sigmas, EulerSolver(fixed_point_iters=iters))
        errs.append((sample(gaussian_velocity, noise, sigmas, EulerSolver()) - data).abs().max().item())
    assert errs[1] < errs[0] / 5, errs


def test_unknown_solver_message():
    with pytest.raises(ValueError, match="unknown solver 'heun'.*euler"):
        make_solver("heun")
