"""Pure flow-matching math: schedules, conversions, guidance, TI2V conditioning, solvers.

Nothing here does I/O or touches a model class; every function works on tensors and floats.
Convention (see ``docs/methods.md``): ``x_sigma = (1 - sigma) * x0 + sigma * noise``,
``v = noise - x0``, ``sigma`` in [0, 1], model timestep ``= 1000 * sigma``.
"""

from flowstudio.core.flow import (
    add_noise,
    classifier_free_guidance,
    flow_sigmas,
    invert_sigmas,
    model_timestep,
    noise_from_velocity,
    shift_sigmas,
    timesteps_from_sigmas,
    velocity_from_x0_noise,
    x0_from_velocity,
)
from flowstudio.core.solvers import SOLVERS, DPMSolverPP2M, EulerSolver, Solver, UniPCSolver, make_solver
from flowstudio.core.ti2v import first_frame_mask, per_token_timesteps, pin_first_frame

__all__ = [
    "SOLVERS",
    "DPMSolverPP2M",
    "EulerSolver",
    "Solver",
    "UniPCSolver",
    "add_noise",
    "classifier_free_guidance",
    "first_frame_mask",
    "flow_sigmas",
    "invert_sigmas",
    "make_solver",
    "model_timestep",
    "noise_from_velocity",
    "per_token_timesteps",
    "pin_first_frame",
    "shift_sigmas",
    "timesteps_from_sigmas",
    "velocity_from_x0_noise",
    "x0_from_velocity",
]
