"""The explicit state one edit shares between its loop, its model calls and its controls.

Every model call of an edit goes through :class:`flowstudio.edit.paired.EditDenoiser`, which
evaluates a batch of *rows*: each row is one side (``"src"``: the source video under the source
prompt, ``"tgt"``: the edit under the target prompt) and one CFG branch (``"cond"``/``"uncond"``).
Before the transformer runs, the denoiser writes the row layout into :class:`EditContext`; the
controls' block hooks and attention processors read it to know which rows to record from and
which to change. Source features come either *live* (a source row in the same batch) or from a
:class:`FeatureStore` filled while the source was inverted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch

from flowstudio.sampling import Controller, LoopState, ModelCall

logger = logging.getLogger(__name__)

Side = Literal["src", "tgt"]
Branch = Literal["cond", "uncond"]
Phase = Literal["source", "edit"]


@dataclass(frozen=True)
class Row:
    """One row of a batched model call: which side and which CFG branch it evaluates."""

    side: Side
    branch: Branch


@dataclass
class EditContext:
    """Where the edit is, and the row layout of the model call in flight.

    Attributes:
        phase: ``"source"`` while the source is inverted (controls record source features),
            ``"edit"`` while the edit runs (controls change target rows).
        rows: layout of the batch the transformer is evaluating now.
        step: step index of the edit run (0 at its first step), ``num_steps`` its length.
        sigma: noise level of the model call in flight.
        edit_sigmas: the edit run's grid ``(N + 1,)``, descending; step windows are read on it.
        token_keep: bool ``(seq,)``, False on tokens no control may touch (TI2V first-frame tokens
            of the target); ``None`` when every token may change.
        call_id: counts model calls; a call split into row chunks keeps one id, so controls can
            carry live source features from the source chunk to the target chunk.
    """

    phase: Phase = "edit"
    rows: tuple[Row, ...] = ()
    step: int = 0
    num_steps: int = 1
    sigma: float = 1.0
    edit_sigmas: torch.Tensor | None = None
    token_keep: torch.Tensor | None = None
    call_id: int = 0

    def source_row_for(self, index: int) -> int | None:
        """Index of the live source row paired with target row ``index`` (same branch, else ``cond``)."""
        branch = self.rows[index].branch
        for wanted in (branch, "cond"):
            for j, row in enumerate(self.rows):
                if row.side == "src" and row.branch == wanted:
                    return j
        return None

    def target_rows(self) -> list[int]:
        return [i for i, row in enumerate(self.rows) if row.side == "tgt"]

    def source_rows(self) -> list[int]:
        return [i for i, row in enumerate(self.rows) if row.side == "src"]

    def in_window(self, start: float, end: float) -> bool:
        """True when the current edit step lies in the fraction window ``[start, end)`` of the run."""
        position = self.step / max(self.num_steps, 1)
        return start <= position < end or (end >= 1.0 and position >= start)

    def sigma_window(self, start: float, end: float) -> tuple[float, float]:
        """Sigma interval ``(lo, hi)`` that the step window ``[start, end)`` of the edit run spans.

        Widened by one grid point each side, so that nearest-sigma look-ups of recorded features
        always find a neighbour.
        """
        if self.edit_sigmas is None:
            return 0.0, 1.0
        n = len(self.edit_sigmas) - 1
        first = max(int(start * n) - 1, 0)
        last = min(int(round(end * n)) + 1, n)
        return float(self.edit_sigmas[last]), float(self.edit_sigmas[first])


class FeatureStore:
    """Source features recorded during inversion, keyed by name and looked up by nearest sigma.

    ``device`` ``"cpu"`` keeps the cache in host memory (moved back per use); ``None`` keeps
    tensors where they were produced. Tensors are stored detached, one per ``(key, sigma)``: a
    later record at the same sigma (a fixed-point iteration) replaces the earlier one.
    """

    def __init__(self, device: torch.device | str | None = "cpu") -> None:
        self.device = None if device is None else torch.device(device)
        self._items: dict[tuple, dict[float, torch.Tensor]] = {}

    def put(self, key: tuple, sigma: float, tensor: torch.Tensor) -> None:
        value = tensor.detach()
        value = value.to(self.device, copy=True) if self.device is not None else value.clone()
        self._items.setdefault(key, {})[round(sigma, 9)] = value

    def get(self, key: tuple, sigma: float, device: torch.device | None = None) -> torch.Tensor | None:
        """The tensor recorded under ``key`` at the sigma nearest ``sigma``; ``None`` if none."""
        entries = self._items.get(key)
        if not entries:
            return None
        nearest = min(entries, key=lambda s: abs(s - sigma))
        value = entries[nearest]
        return value if device is None else value.to(device)

    def __contains__(self, key: tuple) -> bool:
        return key in self._items

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for entries in self._items.values() for t in entries.values())

    def clear(self) -> None:
        self._items.clear()


class SourceTrajectory:
    """Latents of the source along the grid, recorded while it is inverted.

    ``latents[i]`` is the source at ``sigmas[i]`` (``latents[N]`` is the clean source). :meth:`at`
    interpolates linearly in sigma between grid points, for solvers that call the model between
    them (midpoints). Latents are ``(1, C, T, H, W)``; ``device="cpu"`` keeps them in host memory.
    """

    def __init__(self, sigmas: torch.Tensor, clean: torch.Tensor, device: torch.device | str | None = None):
        self.sigmas = sigmas
        self.device = None if device is None else torch.device(device)
        self.latents: dict[int, torch.Tensor] = {}
        self._set(len(sigmas) - 1, clean)

    def _set(self, index: int, x: torch.Tensor) -> None:
        self.latents[index] = x.detach().to(self.device) if self.device is not None else x.detach()

    def recorder(self) -> Controller:
        """A controller that stores ``state.x`` after every inversion step."""
        trajectory = self

        class _Record(Controller):
            def after_step(self, state: LoopState) -> None:
                index = int(torch.argmin((trajectory.sigmas - state.sigma_next).abs()))
                trajectory._set(index, state.x)

        return _Record()

    def at(self, sigma: float, device: torch.device | None = None) -> torch.Tensor:
        """Source latent at noise level ``sigma`` (exact on grid points, linear between them)."""
        known = sorted(self.latents)
        values = [float(self.sigmas[i]) for i in known]
        best = min(range(len(known)), key=lambda k: abs(values[k] - sigma))
        if abs(values[best] - sigma) < 1e-9 or len(known) == 1:
            out = self.latents[known[best]]
        else:
            hi = [k for k in range(len(known)) if values[k] >= sigma]
            lo = [k for k in range(len(known)) if values[k] <= sigma]
            if not hi or not lo:
                out = self.latents[known[best]]
            else:
                a, b = known[hi[-1]], known[lo[0]]
                sa, sb = float(self.sigmas[a]), float(self.sigmas[b])
                w = 0.0 if sa == sb else (sa - sigma) / (sa - sb)
                out = torch.lerp(self.latents[a], self.latents[b], w)
        return out if device is None else out.to(device)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.latents.values())


@dataclass
class ContextSync(Controller):
    """Keeps :class:`EditContext` in step with the loop (always the first controller of a run).

    ``offset``/``total`` place a run inside a longer edit (FlowEdit's regular-sampling tail), so
    step windows read on the whole edit; ``total`` ``None`` means the run is the whole edit.
    """

    context: EditContext
    phase: Phase = "edit"
    offset: int = 0
    total: int | None = None

    def on_start(self, state: LoopState) -> None:
        self.context.phase = self.phase
        if self.phase == "edit":
            self.context.num_steps = self.total if self.total is not None else state.num_steps
            if self.offset == 0:
                self.context.edit_sigmas = state.sigmas

    def before_step(self, state: LoopState) -> None:
        if self.phase == "edit":
            self.context.step = self.offset + state.step
        self.context.sigma = state.sigma

    def before_model_call(self, state: LoopState, call: ModelCall) -> None:
        self.context.sigma = call.sigma
