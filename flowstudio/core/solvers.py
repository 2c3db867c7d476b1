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

    def grid(self, steps: int, shift: float) -> torch.Tensor:
        """The descending sigma grid this solver samples on for ``steps`` steps: the shifted flow grid
        of Wan's schedulers (:func:`flowstudio.core.flow.flow_sigmas`); a solver with its own levels
        overrides it."""
        from flowstudio.core.flow import flow_sigmas

        return flow_sigmas(steps, shift)

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


ARITHMETIC = ("float32", "float64")


class UniPCSolver(_Multistep):
    """UniPC (Zhao et al. 2023, arXiv:2302.04867): UniP-p predictor + UniC corrector, B(h) variants.

    Data prediction with flow sigmas, as diffusers' ``UniPCMultistepScheduler`` (the scheduler
    Wan2.2 ships). The corrector refines the previous step with the model output just computed,
    so it costs no extra model call. ``lower_order_final`` lowers the order near the end of short
    grids, as diffusers does.

    ``arithmetic="float32"`` (default) does the step's scalar math (sigmas, lambdas, ``h``, rho and
    ``B(h)`` coefficients) as diffusers does: on 0-dim float32 tensors, in its order of operations,
    so that generation reproduces stock ``WanPipeline`` bit for bit (with ``batch_cfg=False``; see
    ``tests/test_diffusers_parity.py``). ``"float64"`` computes the coefficients in double precision
    (Python floats); the two differ by float32 rounding (~1e-7 per step), which a trained model
    amplifies to ~2e-5 in the final latents. Steps touching sigma 0 or 1 use the first-order limit
    in both modes.
    """

    name = "unipc"
    order = 2

    def __init__(
        self,
        order: int = 2,
        variant: str = "bh2",
        lower_order_final: bool = True,
        use_corrector: bool = True,
        arithmetic: str = "float32",
    ) -> None:
        if order not in (1, 2, 3):
            raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"UniPC variant must be 'bh1' or 'bh2', got {variant!r}")
        if arithmetic not in ARITHMETIC:
            raise ValueError(f"UniPC arithmetic must be one of {ARITHMETIC}, got {arithmetic!r}")
        self.arithmetic = arithmetic
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

    def _update_float32(
        self,
        x: torch.Tensor,
        sigma_s: torch.Tensor,
        sigma_t: torch.Tensor,
        m0: torch.Tensor,
        past: list[tuple[torch.Tensor, torch.Tensor]],
        order: int,
        model_t: torch.Tensor | None,
    ) -> torch.Tensor:
        """:meth:`_update` with diffusers' arithmetic: 0-dim float32 tensors, in its order of operations.

        A line-for-line transcription of ``UniPCMultistepScheduler.multistep_uni_p_bh_update`` /
        ``multistep_uni_c_bh_update`` (``predict_x0``, flow sigmas); ``past`` holds ``(sigma, x0)``
        of earlier points (float32 0-dim sigmas), most recent first.
        """
        device = x.device
        alpha_t, alpha_s = 1 - sigma_t, 1 - sigma_s
        lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
        lambda_s = torch.log(alpha_s) - torch.log(sigma_s)
        h = lambda_t - lambda_s
        rks, d1s = [], []
        for sigma_i, m_i in past[: order - 1]:
            lambda_i = torch.log(1 - sigma_i) - torch.log(sigma_i)
            rk = (lambda_i - lambda_s) / h
            rks.append(rk)
            d1s.append((m_i - m0) / rk)
        rks.append(torch.ones((), device=device))
        rks_t = torch.stack(rks)
        hh = -h
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        b_h = hh if self.variant == "bh1" else torch.expm1(hh)
        rows, rhs = [], []
        factorial = 1
        for k in range(1, order + 1):
            rows.append(torch.pow(rks_t, k - 1))
            rhs.append(h_phi_k * factorial / b_h)
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        matrix, vector = torch.stack(rows), torch.stack(rhs)
        stacked = torch.stack(d1s, dim=1) if d1s else None
        out = sigma_t / sigma_s * x - alpha_t * h_phi_1 * m0
        if model_t is None:
            residual: torch.Tensor | int = 0
            if stacked is not None:
                if order == 2:
                    rhos = torch.ones(1, dtype=x.dtype, device=device) * 0.5
                else:
                    rhos = torch.linalg.solve(matrix[:-1, :-1], vector[:-1]).to(device).to(x.dtype)
                residual = torch.einsum("k,bkc...->bc...", rhos, stacked)
            return (out - alpha_t * b_h * residual).to(x.dtype)
        if order == 1:
            rhos = torch.ones(1, dtype=x.dtype, device=device) * 0.5
        else:
            rhos = torch.linalg.solve(matrix, vector).to(device).to(x.dtype)
        correction = torch.einsum("k,bkc...->bc...", rhos[:-1], stacked) if stacked is not None else 0
        return (out - alpha_t * b_h * (correction + rhos[-1] * (model_t - m0))).to(x.dtype)

    def step(self, velocity_fn: VelocityFn, x: torch.Tensor, sigmas: torch.Tensor, i: int) -> torch.Tensor:
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        v = velocity_fn(x, sigma)
        exact = self.arithmetic == "float64"
        if exact:
            grid_s = grid_t = None
            x0 = x - sigma * v  # from the uncorrected sample, as diffusers does
        else:
            # diffusers keeps its sigmas as float32 tensors and does all scalar math on them
            grid = sigmas.to(device=x.device, dtype=torch.float32)
            grid_s, grid_t = grid[i], grid[i + 1]
            x0 = x - grid_s * v

        # 1. UniC: correct the sample the last predictor produced, with the new model output.
        if self.use_corrector and self.last_sample is not None and self.last_step is not None:
            sigma_prev, _ = self.last_step
            lambdas = [_lambda(sigma_prev), _lambda(sigma)] + [
                lam for lam, _, _ in self.history[-self.last_order :]
            ]
            if all(math.isfinite(lam) for lam in lambdas):
                if exact:
                    past = [(lam, m) for lam, _, m in reversed(self.history[:-1])]
                    last_x0 = self.history[-1][2]
                    x = self._update(
                        self.last_sample, sigma_prev, sigma, last_x0, past, self.last_order, model_t=x0
                    )
                else:
                    past32 = [(s, m) for _, s, m in reversed(self.history[:-1])]
                    x = self._update_float32(
                        self.last_sample,
                        self.history[-1][1],
                        grid_s,
                        self.history[-1][2],
                        past32,
                        self.last_order,
                        model_t=x0,
                    )

        # 2. UniP: predict the next sample.
        self._push(sigma, x0, keep=self.solver_order)
        if not exact:
            lam, _, m = self.history[-1]
            self.history[-1] = (lam, grid_s, m)  # the float32 sigma, for the float32 updates
        wanted = self.solver_order
        if self.lower_order_final:
            wanted = min(wanted, len(sigmas) - 1 - i)
        lam_s, lam_t = _lambda(sigma), _lambda(sigma_next)
        order = self._usable_order(wanted, lam_s, lam_t)
        self.last_sample, self.last_order, self.last_step = x, order, (sigma, sigma_next)
        if not exact and math.isfinite(lam_s) and math.isfinite(lam_t):
            past32 = [(s, m) for _, s, m in reversed(self.history[:-1])]
            return self._update_float32(x, grid_s, grid_t, x0, past32, order, model_t=None)
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


# Second-order midpoint solvers (RF-Solver, FireFlow) and the DMD students' stochastic sampler live in
# their own files and register themselves.
import flowstudio.core.midpoint  # noqa: E402, F401
import flowstudio.core.stochastic  # noqa: E402, F401
