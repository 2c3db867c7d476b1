"""Noise reschedule: the edit strength is the noise level the edit starts from.

``strength`` in [0, 1] keeps the tail of the denoising grid whose sigmas are ``<= strength``
(:func:`flowstudio.core.flow.truncate_sigmas`): the source is inverted only up to that level
(partial inversion) or, with ``mode="noise"``, noised to it directly with fresh noise (SDEdit,
Meng et al. 2022, arXiv:2108.01073), and the edit runs from there. Lower strength keeps more of the
source's layout and motion; 0 runs no step at all and returns the source; 1 is the full edit.
For FlowEdit the same grid truncation acts like ``n_max``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from flowstudio.core.flow import add_noise, truncate_sigmas
from flowstudio.errors import InputError

RescheduleMode = Literal["invert", "noise"]


@dataclass(frozen=True)
class RescheduleConfig:
    """Noise reschedule settings.

    Attributes:
        strength: starting noise level of the edit, 0 (no edit) .. 1 (full edit).
        mode: ``"invert"`` (partial inversion) or ``"noise"`` (fresh noise, SDEdit).
    """

    strength: float = 1.0
    mode: RescheduleMode = "invert"

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise InputError(f"reschedule strength must be in [0, 1], got {self.strength}")
        if self.mode not in ("invert", "noise"):
            raise InputError(f"reschedule mode must be 'invert' or 'noise', got {self.mode!r}")


def reschedule_sigmas(sigmas: torch.Tensor, strength: float) -> torch.Tensor | None:
    """The part of the descending grid ``sigmas`` that starts at noise ``<= strength``; ``None`` at 0."""
    if strength <= 0.0:
        return None
    if strength >= 1.0:
        return sigmas
    return truncate_sigmas(sigmas, strength)


def renoise(x0: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """SDEdit start: ``(1 - sigma) x0 + sigma * noise``, noise drawn on the CPU from ``generator``."""
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0)
    return add_noise(x0, noise, sigma)
