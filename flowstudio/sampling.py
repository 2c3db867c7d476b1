"""The one sampling loop. Editing methods plug in as controllers; they never copy the loop.

The loop is k-diffusion-shaped: the sigma array drives it, a solver advances ``x`` one step at a
time, and observers see every step. On top of that, a :class:`Controller` gets hooks around each
step and each model call, and the loop state carries the model (for attention processors) and an
``extras`` dict where methods keep their state (feature caches, source K/V, masks)::

    on_start -> [before_step -> (before_model_call -> model -> after_model_call)* -> after_step]* -> on_end

``sample`` walks a descending grid (noise -> data); ``invert`` walks the same grid backwards
(data -> noise). Both pin the TI2V first frame after every step when a ``pin`` is given, so its
latent stays bit-exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from flowstudio.core.solvers import Solver, VelocityFn
from flowstudio.core.ti2v import pin_first_frame

Direction = Literal["denoise", "invert"]


@dataclass
class FirstFramePin:
    """TI2V conditioning to hold fixed: ``condition`` latent ``(B, C, 1, H, W)`` where ``mask`` is 0."""

    condition: torch.Tensor
    mask: torch.Tensor

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return pin_first_frame(x, self.condition, self.mask)


@dataclass
class LoopState:
    """Everything a controller may read or change during a run.

    ``step`` counts loop iterations from 0; ``sigma``/``sigma_next`` are the noise levels the
    current step moves between (ascending when ``direction == "invert"``).
    """

    x: torch.Tensor
    sigmas: torch.Tensor
    direction: Direction
    model: torch.nn.Module | None = None
    step: int = 0
    sigma: float = 0.0
    sigma_next: float = 0.0
    num_steps: int = 0
    model_calls: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelCall:
    """One model evaluation inside a step; ``before_model_call`` may replace ``x`` or ``sigma``."""

    x: torch.Tensor
    sigma: float
    index_in_step: int


class Controller:
    """Hooks around the loop. Subclass and override what you need; every hook is optional."""

    def on_start(self, state: LoopState) -> None:
        """Once before the first step (install attention processors, allocate caches)."""

    def before_step(self, state: LoopState) -> None:
        """Before each step; may change ``state.x``."""

    def before_model_call(self, state: LoopState, call: ModelCall) -> None:
        """Before each model call; may change ``call.x`` / ``call.sigma``."""

    def after_model_call(self, state: LoopState, call: ModelCall, velocity: torch.Tensor) -> torch.Tensor:
        """After each model call; returns the velocity the solver will use."""
        return velocity

    def after_step(self, state: LoopState) -> None:
        """After each step; may change ``state.x`` (blending, injection of latents)."""

    def on_end(self, state: LoopState) -> None:
        """Once after the last step (restore processors, free caches), also on error."""


StepCallback = Callable[[dict[str, Any]], None]


def _controlled_velocity(
    velocity_fn: VelocityFn, controllers: Sequence[Controller], state: LoopState
) -> VelocityFn:
    calls_in_step = {"n": 0}

    def wrapped(x: torch.Tensor, sigma: float) -> torch.Tensor:
        call = ModelCall(x=x, sigma=sigma, index_in_step=calls_in_step["n"])
        for controller in controllers:
            controller.before_model_call(state, call)
        velocity = velocity_fn(call.x, call.sigma)
        for controller in controllers:
            velocity = controller.after_model_call(state, call, velocity)
        calls_in_step["n"] += 1
        state.model_calls += 1
        return velocity

    def reset_step() -> None:
        calls_in_step["n"] = 0

    wrapped.reset_step = reset_step  # type: ignore[attr-defined]
    return wrapped


def run_loop(
    velocity_fn: VelocityFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    solver: Solver,
    *,
    direction: Direction = "denoise",
    controllers: Sequence[Controller] = (),
    pin: FirstFramePin | None = None,
    model: torch.nn.Module | None = None,
    extras: dict[str, Any] | None = None,
    callback: StepCallback | None = None,
    progress: bool = False,
    description: str | None = None,
) -> LoopState:
    """Run ``solver`` over the descending grid ``sigmas`` in ``direction``; return the final state.

    ``x`` is ``(B, C, T, H, W)`` at ``sigmas[0]`` (denoise) or ``sigmas[-1]`` (invert).
    """
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(
            f"sigmas must be a 1-D grid with at least 2 entries, got shape {tuple(sigmas.shape)}"
        )
    if not bool((sigmas[:-1] >= sigmas[1:]).all()):
        raise ValueError("sigmas must be a descending (denoising) grid; invert() walks it backwards")
    num_steps = len(sigmas) - 1
    state = LoopState(
        x=x if pin is None else pin.apply(x),
        sigmas=sigmas,
        direction=direction,
        model=model,
        num_steps=num_steps,
        extras=extras if extras is not None else {},
    )
    wrapped = _controlled_velocity(velocity_fn, controllers, state)
    solver.reset()
    order = range(num_steps) if direction == "denoise" else range(num_steps - 1, -1, -1)
    for controller in controllers:
        controller.on_start(state)
    try:
        bar = tqdm(order, desc=description or direction, disable=not progress, leave=False)
        for state.step, i in enumerate(bar):
            if direction == "denoise":
                state.sigma, state.sigma_next = float(sigmas[i]), float(sigmas[i + 1])
            else:
                state.sigma, state.sigma_next = float(sigmas[i + 1]), float(sigmas[i])
            for controller in controllers:
                controller.before_step(state)
            wrapped.reset_step()  # type: ignore[attr-defined]
            if direction == "denoise":
                x_next = solver.step(wrapped, state.x, sigmas, i)
            else:
                x_next = solver.invert_step(wrapped, state.x, sigmas, i)
            state.x = x_next if pin is None else pin.apply(x_next)
            for controller in controllers:
                controller.after_step(state)
            if pin is not None:
                state.x = pin.apply(state.x)
            if callback is not None:
                callback(
                    {
                        "step": state.step,
                        "i": i,
                        "sigma": state.sigma,
                        "sigma_next": state.sigma_next,
                        "x": state.x,
                        "direction": direction,
                    }
                )
    finally:
        for controller in controllers:
            controller.on_end(state)
    return state


def sample(
    velocity_fn: VelocityFn, noise: torch.Tensor, sigmas: torch.Tensor, solver: Solver, **options: Any
) -> torch.Tensor:
    """Denoise ``noise`` (at ``sigmas[0]``) down the grid; returns the sample at ``sigmas[-1]``."""
    return run_loop(velocity_fn, noise, sigmas, solver, direction="denoise", **options).x


def invert(
    velocity_fn: VelocityFn, data: torch.Tensor, sigmas: torch.Tensor, solver: Solver, **options: Any
) -> torch.Tensor:
    """Invert ``data`` (at ``sigmas[-1]``) up the denoising grid; returns the latent at ``sigmas[0]``."""
    return run_loop(velocity_fn, data, sigmas, solver, direction="invert", **options).x
