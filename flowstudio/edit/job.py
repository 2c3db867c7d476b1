"""What an editing method receives: encoded source, both conditionings, the grid and the controls.

The API (:func:`flowstudio.edit.api.edit`) builds one :class:`EditJob`; a method
(:mod:`~flowstudio.edit.inversion`, :mod:`~flowstudio.edit.flowedit`) turns it into edited latents
with the one sampling loop, and the controls ride along as controllers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from flowstudio.core.solvers import VelocityFn
from flowstudio.denoiser import Conditioning
from flowstudio.edit.blending import BlendConfig, LatentBlend
from flowstudio.edit.context import EditContext
from flowstudio.edit.controls import SourceFeatureControl
from flowstudio.edit.paired import EditDenoiser, Request
from flowstudio.sampling import Controller, FirstFramePin


@dataclass
class EditJob:
    """Inputs of one edit run.

    Attributes:
        denoiser: the batched source/target model-call path.
        model: the transformer (controls install their hooks on it).
        context: shared state read by the controls.
        x_src: clean source latent ``(1, C, T, H, W)``.
        source: source conditioning (source prompt, source/inversion CFG, source first frame).
        target: target conditioning (target prompt, target/generation CFG, target first frame).
        sigmas: the edit grid, descending, already rescheduled.
        feature_controls: injection / K/V sharing controls (cache or recompute mode).
        blend: blending settings and latent edit mask ``(1, 1, T, H, W)``, or ``None``.
        generator: CPU generator for every random draw of the method.
        trajectory_device: where the source trajectory is kept (``"cpu"`` or ``None`` = in place).
        progress: show progress bars.
        observers: controllers that only watch every loop of the method (progress reports).
        extras: what the method reports back (model calls per phase, ...).
    """

    denoiser: EditDenoiser
    model: torch.nn.Module
    context: EditContext
    x_src: torch.Tensor
    source: Conditioning
    target: Conditioning
    sigmas: torch.Tensor
    feature_controls: list[SourceFeatureControl] = field(default_factory=list)
    blend: tuple[BlendConfig, torch.Tensor] | None = None
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))
    trajectory_device: str | None = None
    progress: bool = False
    observers: list[Controller] = field(default_factory=list)
    extras: dict = field(default_factory=dict)

    def pin(self, cond: Conditioning) -> FirstFramePin | None:
        """The TI2V first-frame pin of ``cond`` (``None`` without a first frame)."""
        return None if cond.first_frame is None else FirstFramePin(condition=cond.first_frame, mask=cond.mask)

    def target_velocity(self, source_at: Callable[[float], torch.Tensor]) -> VelocityFn:
        """Target velocity; carries a live source row (at ``source_at(sigma)``) while a control wants one."""

        def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
            requests = [Request("tgt", x, self.target)]
            if any(c.wants_live_source() for c in self.feature_controls):
                requests.insert(0, Request("src", source_at(sigma).to(x), self.source))
            return self.denoiser.velocities(requests, sigma)["tgt"]

        return velocity

    def blend_controllers(self, reference: Callable[[float], torch.Tensor]) -> list[Controller]:
        if self.blend is None:
            return []
        config, mask = self.blend
        return [
            LatentBlend(
                config, mask, reference, self.context, protect_first_frame=self.target.first_frame is not None
            )
        ]
