"""Feature injection: target block outputs pulled towards the source's (plug-and-play style).

At the selected transformer blocks and steps, the hidden states ``(B, seq, D)`` a block outputs for
each target row become ``h_tgt + strength * (h_src - h_tgt)``, where ``h_src`` is the same block's
output for the source (live row or recorded during inversion). Strength 0 changes nothing,
strength 1 replaces the target features by the source's (Tumanyan et al. 2023, "Plug-and-Play
Diffusion Features", arXiv:2211.12572, transposed to a DiT's block outputs). Target TI2V
first-frame tokens are never changed.

The hook is a plain ``torch.nn.Module.register_forward_hook`` on each block (``forward`` is left
alone), installed in ``on_start`` and removed in ``on_end``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from flowstudio.edit.context import EditContext, FeatureStore
from flowstudio.edit.controls import SourceFeatureControl, resolve_blocks
from flowstudio.errors import InputError
from flowstudio.sampling import LoopState


@dataclass(frozen=True)
class InjectionConfig:
    """Feature injection settings.

    Attributes:
        blocks: transformer block indexes (negative from the end); ``None`` = every block.
        start, end: step window as fractions of the edit run, ``[start, end)``.
        strength: 0 (off) .. 1 (replace target features by the source's).
    """

    blocks: tuple[int, ...] | None = None
    start: float = 0.0
    end: float = 0.5
    strength: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise InputError(f"injection strength must be in [0, 1], got {self.strength}")


class FeatureInjection(SourceFeatureControl):
    """Controller that installs the injection hooks; see the module docstring."""

    name = "injection"

    def __init__(
        self, config: InjectionConfig, context: EditContext, store: FeatureStore | None = None
    ) -> None:
        super().__init__(context, blocks=config.blocks, start=config.start, end=config.end, store=store)
        self.config = config

    def on_start(self, state: LoopState) -> None:
        if state.model is None:
            raise InputError("feature injection needs the model in the loop state (run_loop(model=...))")
        blocks = state.model.blocks
        for index in resolve_blocks(self.blocks, len(blocks), self.name):
            self._handles.append(blocks[index].register_forward_hook(self._hook(index)))

    def _hook(self, index: int) -> Callable[[torch.nn.Module, Sequence, torch.Tensor], torch.Tensor]:
        def hook(module: torch.nn.Module, args: Sequence, output: torch.Tensor) -> torch.Tensor:
            return self.process(index, output)

        return hook

    def process(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        """Record (source phase) or inject into target rows (edit phase) at block ``index``."""
        if self.recording():
            self.record(("hidden", index), hidden)
            return hidden
        strength = self.config.strength
        if not self.active or strength == 0.0:
            return hidden
        self.stash_live(("hidden", index), hidden)
        targets = self.context.target_rows()
        if not targets:
            return hidden
        out = hidden.clone()
        keep = self.keep_tokens(hidden.device)
        for i in targets:
            source = self.source_for(("hidden", index), i, hidden)
            if source is None:
                continue
            mixed = source if strength == 1.0 else torch.lerp(hidden[i], source, strength)
            out[i] = mixed if keep is None else torch.where(keep[:, None], mixed, hidden[i])
        return out
