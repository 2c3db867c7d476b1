"""RF-Solver and FireFlow (flowstudio.core.midpoint): order, cost, both directions, registration."""

from __future__ import annotations

import math

import pytest
import torch
from test_solvers import _global_error, gaussian_flow, gaussian_velocity

from flowstudio.core import flow_sigmas, make_solver
from flowstudio.core.midpoint import FireFlowSolver, RFSolver
from flowstudio.core.solvers import SOLVERS
from flowstudio.sampling import invert, run_loop, sample


@pytest.fixture
def x_start() -> torch.Tensor:
    return torch.randn(2, 4, 3, 5, 5, generator=torch.Generator().manual_seed(0))


def _rates(name: str, x_start: torch.Tensor) -> tuple[list[float], list[float]]:
    errors = [_global_error(make_solver(name), n, x_start) for n in (16, 32, 64, 128)]
    return [math.log2(a / b) for a, b in zip(errors, errors[1:], strict=False)], errors


def test_registered_beside_the_existing_solvers():
    assert {"euler", "dpm++2m", "unipc", "rf-solver", "fireflow"} <= set(SOLVERS)
    assert isinstance(make_solver("rf-solver"), RFSolver) and isinstance(
        make_solver("fireflow"), FireFlowSolver
    )


def test_rf_solver_is_second_order_on_the_gaussian_flow(x_start):
    """Global error ~ C * steps^-2: doubling the steps divides it by ~4 (log2 ratio ~2)."""
    rates, errors = _rates("rf-solver", x_start)
    assert min(rates) > 1.8, f"rf-solver rates {rates} (errors {errors}), expected ~2 (midpoint rule)"


def test_rf_solver_step_is_the_midpoint_rule(x_start):
    """x + h v0 + h^2/2 * (v_mid - v0)/(h/2) == x + h * v(x + h/2 v0, s + h/2)."""
    sigmas = torch.tensor([0.8, 0.5], dtype=torch.float64)
    x = x_start.double()
    v0 = gaussian_velocity(x, 0.8)
    midpoint = x + (-0.3) * gaussian_velocity(x + (-0.15) * v0, 0.65)
    assert torch.allclose(RFSolver().step(gaussian_velocity, x, sigmas, 0), midpoint, atol=1e-13, rtol=0)


def test_fireflow_costs_one_call_per_step_and_beats_euler(x_start):
    calls = {"n": 0}

    def counted(x, sigma):
        calls["n"] += 1
        return gaussian_velocity(x, sigma)

    steps = 20
    sigmas = torch.linspace(0.95, 0.05, steps + 1, dtype=torch.float64)
    state = run_loop(counted, x_start.double(), sigmas, FireFlowSolver())
    assert calls["n"] == steps + 1 == state.model_calls, f"FireFlow made {calls['n']} calls for {steps} steps"
    # A second trajectory starts fresh (reset): again N + 1 calls, no velocity leaks across runs.
    calls["n"] = 0
    run_loop(counted, x_start.double(), sigmas, FireFlowSolver())
    assert calls["n"] == steps + 1
    rates, errors = _rates("fireflow", x_start)
    euler_64 = _global_error(make_solver("euler"), 64, x_start)
    # Second order at ~1 call per step (measured rates ~1.8-1.95; errors ~150x below Euler at 64 steps).
    assert min(rates) > 1.6 and errors[2] < euler_64 / 30, (rates, errors, euler_64)


@pytest.mark.parametrize("name", ["rf-solver", "fireflow"])
def test_inversion_then_sampling_round_trip(name, x_start):
    """Invert data to noise and sample back on the same grid: error falls fast with the steps."""
    data = gaussian_flow(x_start.double(), 1.0, 0.0)

    def error(steps: int) -> float:
        sigmas = flow_sigmas(steps, 3.0)
        noise = invert(gaussian_velocity, data, sigmas, make_solver(name))
        return (sample(gaussian_velocity, noise, sigmas, make_solver(name)) - data).abs().max().item()

    coarse, fine = error(10), error(40)
    assert fine < coarse / 4, f"{name}: round trip {coarse:.2e} at 10 steps, {fine:.2e} at 40"
