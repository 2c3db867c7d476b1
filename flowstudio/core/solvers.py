"""Flow-matching ODE solvers as step functions that run in both directions.

Every solver implements one step of ``dx/dsigma = v(x, sigma)`` on an explicit sigma grid::

    x_next = solver.step(velocity_fn, x, sigmas, i)        # sigmas[i] -> sigmas[i + 1]

``sigmas`` may descend (denoise: noise -> data) or ascend (invert: data -> noise); the formulas
are the same. ``solver.invert_step(velocity_fn, x, sigmas, i)`` walks a *denoising* grid backwards
(``sigmas[i + 1] -> sigmas[i]``); by default it is ``step`` on the reversed grid, and Euler
overrides it with the exact algebraic inverse of its denoising step.

Multistep solvers (DPM-Solver++ 2M, UniPC) keep a short history of data predictions
``x0 = x - sigma * v``; call :meth:`Solver.reset` before a new trajectory. Their updates are the
data-prediction ("x0") forms of Lu et al. 2022 (DPM-Solver++) and Zhao et al. 2023 (UniPC) with
``alpha = 1 - sigma`` and ``lambda = log(alpha / sigma)``, which is how diffusers' schedulers run
with ``use_flow_sigmas=True, prediction_type="flow_prediction"``. Where ``lambda`` is infinite
(``sigma`` exactly 0 or 1) a step falls back to first order, which in this parameterisation *is*
the Euler step ``x + (sigma_next - sigma) * v``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]
"""``velocity_fn(x, sigma) -> v``, the denoiser with conditioning and guidance already bound."""


def _lambda(sigma: float) -> float:
    """Half log-SNR ``log((1 - sigma) / sigma)``; +inf at sigma 0, -inf at sigma 1."""
    if sigma <= 0.0:
        return math.inf
    if sigma >= 1.0:
        return -math.inf
    return math.log1p(-sigma) - math.log(sigma)


def first_order_step(
    x: torch.Tensor, x0: torch.Tensor, v: torch.Tensor, sigma: float, sigma_next: float
) -> torch.Tensor:
    """First-order (DDIM / Euler) step in data-prediction form.

    ``x_t = (sigma_t / sigma_s) x + (alpha_t - alpha_s sigma_t / sigma_s) x0``; with
    ``x0 = x - sigma_s v`` this is exactly ``x + (sigma_t - sigma_s) v``, the form used at ``sigma_s = 0``.
    ``x`` may differ from the point ``x0`` was predicted at (UniPC corrects it), hence both arguments.
    """
    if sigma <= 0.0:
        return x + (sigma_next - sigma) * v
    ratio = sigma_next / sigma
    return ratio * x + ((1.0 - sigma_next) - (1.0 - sigma) * ratio) * x0


class Solver:
    """Base class: a stateful stepper over an explicit sigma grid."""

    name: ClassVar[str] = "solver"
    order: ClassVar[int] = 1
    model_calls_per_step: ClassVar[float] = 1.0

    def reset(self) -> None:
        """Forget the history of a previous trajectory."""

    def step(self, velocity_fn: VelocityFn, x: torch.Tensor, sigmas: torch.Tensor, i: int) -> torch.Tensor:
        """Advance ``x`` from ``sigmas[i]`` to ``sigmas[i + 1]``."""
        raise NotImplementedError

    def invert_step(
        self, velocity_fn: VelocityFn, x: torch.Tensor, sigmas: torch.Tensor, i: int
    ) -> torch.Tensor:
        """Walk a descending grid backwards: map ``x`` at ``sigmas[i + 1]`` to ``sigmas[i]``."""
        reversed_sigmas = torch.flip(sigmas, dims=[0])
        return self.step(velocity_fn, x, reversed_sigmas, len(sigmas) - 2 - i)


class EulerSolver(Solver):
    """First-order Euler: ``x_next = x + (sigma_next - sigma) * v(x, sigma)``.

    Equals ``FlowMatchEulerDiscreteScheduler.step`` and first-order DPM-Solver++/UniPC in flow form.

    Inversion is the exact algebraic inverse of the denoising step,
    ``x_i = x_{i+1} - (sigma_{i+1} - sigma_i) * v(x_i, sigma_i)``, solved by fixed-point iteration
    started at ``x_i ~ x_{i+1}`` (``fixed_point_iters`` extra model calls per step; 0 gives the
    classic one-call inversion that evaluates the field at the denoising step's sigma). For a field
    that does not depend on ``x`` it is exact in one call.
    """

    name = "euler"
    order = 1

    def __init__(self, fixed_point_iters: int = 0) -> None:
        if fixed_point_iters < 0:
            raise ValueError(f"fixed_point_iters must be >= 0, got {fixed_point_iters}")
        self.fixed_point_iters = fixed_point_iters

    def step(self, velocity_fn: VelocityFn, x: torch.Tensor, sigmas: torch.Tensor, i: int) -> torch.Tensor:
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        return x + (sigma_next - sigma) * velocity_fn(x, sigma)

    def invert_step(
        self, velocity_fn: VelocityFn, x: torch.Tensor, sigmas: torch.Tensor, i: int
    ) -> torch.Tensor:
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        estimate = x
        for _ in range(1 + self.fixed_point_iters):
            estimate = x - (sigma_next - sigma) * velocity_fn(estimate, sigma)
        return estimate


class _Multistep(Solver):
    """Shared history of ``(lambda, sigma, x0_prediction)`` for the multistep solvers."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.history: list[tuple[float, float, torch.Tensor]] = []

    def _push(self, sigma: float, x0: torch.Tensor, keep: int) -> None:
        self.history.append((_lambda(sigma), sigma, x0))
        del self.history[:-keep]

    def _usable_order(self, wanted: int, *lambdas: float) -> int:
        """Highest order <= ``wanted`` whose lambdas (current point, target, history) are all finite."""
        if not all(math.isfinite(v) for v in lambdas):
            return 1
        usable = 1
        for lam, _, _ in reversed(self.history[:-1]):
            if usable >= wanted or not math.isfinite(lam):
                break
            usable += 1
        return usable


class DPMSolverPP2M(_Multistep):
    """DPM-Solver++(2M), data prediction, midpoint form (Lu et al. 2022, arXiv:2211.01095, Alg. 2).

    With ``h = lambda_t - lambda_s``, ``r = h_prev / h``, ``D1 = (x0_s - x0_prev) / r``::

        x_t = (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) x0_s - 0.5 alpha_t (e^{-h} - 1) D1

    First step and steps touching sigma 0 or 1 are first order (Euler). Matches diffusers'
    ``DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, use_flow_sigmas=True)``.
    """

    name = "dpm++2m"
    order = 2

    def step(self, velocity_fn: VelocityFn, x: torch.Tensor, sigmas: torch.Tensor, i: int) -> torch.Tensor:
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        v = velocity_fn(x, sigma)
        x0 = x - sigma * v
        self._push(sigma, x0, keep=2)
        lam_s, lam_t = _lambda(sigma), _lambda(sigma_next)
        if self._usable_order(2, lam_s, lam_t) < 2:
            return first_order_step(x, x0, v, sigma, sigma_next)
        lam_prev, _, x0_prev = self.history[-2]
        h = lam_t - lam_s
        r = (lam_s - lam_prev) / h
        phi = math.expm1(-h)  # e^{-h} - 1
        alpha_t = 1.0 - sigma_next
        d1 = (x0 - x0_prev) / r
        return (sigma_next / sigma) * x - (alpha_t * phi) * x0 - (0.5 * alpha_t * phi) * d1


class UniPCSolver(_Multistep):
    """UniPC (Zhao et al. 2023, arXiv:2302.04867): UniP-p predictor + UniC corrector, B(h) variants.

    Data prediction with flow sigmas, as diffusers' ``UniPCMultistepScheduler`` (the scheduler
    Wan2.2 ships). The corrector refines the previous step with the model output just computed,
    so it costs no extra model call. ``lower_order_final`` lowers the order near the end of short
    grids, as diffusers does.
    """

    name = "unipc"
    order = 2

    def __init__(
        self, order: int = 2, variant: str = "bh2", lower_order_final: bool = True, use_corrector: bool = True
    ) -> None:
        if order not in (1, 2, 3):
            raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"UniPC variant must be 'bh1' or 'bh2', got {variant!r}")
        self.solver_order = order
        self.variant = variant
        self.lower_order_final = lower_order_final
        self.use_corrector = use_corrector
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.last_sample: torch.Tensor | None = None
        self.last_order = 0
        self.last_step: tuple[float, float] | None = None  # (sigma_s0, sigma_t) of the last predictor

    def _coefficients(
        self, h: float, rks: list[float], order: int, corrector: bool
    ) -> tuple[list[float], float, float]:
        """rho coefficients, ``h*phi_1`` and ``B(h)`` of the UniPC update (data prediction: ``hh = -h``)."""
        hh = -h
        h_phi_1 = math.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1.0
        b_h = hh if self.variant == "bh1" else math.expm1(hh)
        rows, rhs = [], []
        factorial = 1
        for k in range(1, order + 1):
            rows.append([rk ** (k - 1) for rk in rks])
            rhs.append(h_phi_k * factorial / b_h)
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - 1.0 / factorial
        if corrector:
            if order == 1:
                return [0.5], h_phi_1, b_h
            return (
                torch.linalg.solve(
                    torch.tensor(rows, dtype=torch.float64), torch.tensor(rhs, dtype=torch.float64)
                ).tolist(),
                h_phi_1,
                b_h,
            )
        if order == 1:
            return [], h_phi_1, b_h
        if order == 2:
            return [0.5], h_phi_1, b_h
        sub = torch.tensor([row[:-1] for row in rows[:-1]], dtype=torch.float64)
        return torch.linalg.solve(sub, torch.tensor(rhs[:-1], dtype=torch.float64)).tolist(), h_phi_1, b_h

    def _update(
        self,
        x: torch.Tensor,
        sigma_s: float,
        sigma_t: float,
        m0: torch.Tensor,
        past: list[tuple[float, torch.Tensor]],
        order: int,
        model_t: torch.Tensor | None,
    ) -> torch.Tensor:
        """Shared UniP (``model_t is None``) / UniC update from ``sigma_s`` to ``sigma_t``.

        ``past`` holds ``(lambda, x0)`` of earlier points, most recent first.
        """
        lam_s, lam_t = _lambda(sigma_s), _lambda(sigma_t)
        h = lam_t - lam_s
        rks = [(lam_i - lam_s) / h for lam_i, _ in past[: order - 1]] + [1.0]
        d1s = [(m_i - m0) / rk for (_, m_i), rk in zip(past[: order - 1], rks, strict=False)]
        rhos, h_phi_1, b_h = self._coefficients(h, rks, order, corrector=model_t is not None)
        alpha_t = 1.0 - sigma_t
        out = (sigma_t / sigma_s) * x - (alpha_t * h_phi_1) * m0
        residual = sum((rho * d for rho, d in zip(rhos, d1s, strict=False)), torch.zeros_like(x))
        if model_t is not None:
            residual = residual + rhos[-1] * (model_t - m0)
        return out - (alpha_t * b_h) * residual

    def step(self, velocity_fn: VelocityFn, x: torch.Tensor, sigmas: torch.Tensor, i: int) -> torch.Tensor:
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        v = velocity_fn(x, sigma)
        x0 = x - sigma * v  # from the uncorrected sample, as diffusers does

        # 1. UniC: correct the sample the last predictor produced, with the new model output.
        if self.use_corrector and self.last_sample is not None and self.last_step is not None:
            sigma_prev, _ = self.last_step
            lambdas = [_lambda(sigma_prev), _lambda(sigma)] + [
                lam for lam, _, _ in self.history[-self.last_order :]
            ]
            if all(math.isfinite(lam) for lam in lambdas):
                past = [(lam, m) for lam, _, m in reversed(self.history[:-1])]
                x = self._update(
                    self.last_sample,
                    sigma_prev,
                    sigma,
                    self.history[-1][2],
                    past,
                    self.last_order,
                    model_t=x0,
                )

        # 2. UniP: predict the next sample.
        self._push(sigma, x0, keep=self.solver_order)
        wanted = self.solver_order
        if self.lower_order_final:
            wanted = min(wanted, len(sigmas) - 1 - i)
        order = self._usable_order(wanted, _lambda(sigma), _lambda(sigma_next))
        self.last_sample, self.last_order, self.last_step = x, order, (sigma, sigma_next)
        if order == 1:
            return first_order_step(x, x0, v, sigma, sigma_next)
        past = [(lam, m) for lam, _, m in reversed(self.history[:-1])]
        return self._update(x, sigma, sigma_next, x0, past, order, model_t=None)


SOLVERS: dict[str, type[Solver]] = {
    EulerSolver.name: EulerSolver,
    DPMSolverPP2M.name: DPMSolverPP2M,
    UniPCSolver.name: UniPCSolver,
}


def make_solver(name: str, **options) -> Solver:
    """Build a solver by name (``euler``, ``dpm++2m``, ``unipc``)."""
    try:
        return SOLVERS[name](**options)
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; choose one of {sorted(SOLVERS)}") from None

# Second-order midpoint solvers (RF-Solver, FireFlow) live in their own file and register themselves.
import flowstudio.core.midpoint  # noqa: E402, F401
