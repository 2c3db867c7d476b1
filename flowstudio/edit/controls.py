"""Shared base of the controls that read source features (feature injection, K/V sharing).

A control is a :class:`~flowstudio.sampling.Controller`. It installs its block hooks or attention
processors on ``state.model`` in ``on_start`` and removes them in ``on_end`` (the loop calls
``on_end`` on errors too), so the model is unchanged after every run. Source features come from a
live source row of the same batch (*recompute*) or from a :class:`FeatureStore` the control
filled while the source was inverted (*cache*); :func:`choose_source_mode` picks one by a memory
budget.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import torch

from flowstudio.edit.context import EditContext, FeatureStore
from flowstudio.errors import InputError
from flowstudio.sampling import Controller, LoopState

logger = logging.getLogger(__name__)

SourceMode = Literal["auto", "cache", "recompute"]


def resolve_blocks(blocks: Sequence[int] | None, num_layers: int, name: str) -> list[int]:
    """Block indexes (negative counts from the end; ``None`` = every block), checked against the model."""
    if blocks is None:
        return list(range(num_layers))
    out = []
    for b in blocks:
        index = b + num_layers if b < 0 else b
        if not 0 <= index < num_layers:
            raise InputError(f"{name}: block {b} does not exist; the model has blocks 0..{num_layers - 1}")
        out.append(index)
    return sorted(set(out))


def check_window(start: float, end: float, name: str) -> None:
    if not 0.0 <= start < end <= 1.0:
        raise InputError(
            f"{name}: step window must satisfy 0 <= start < end <= 1 (fractions of the edit steps), "
            f"got start={start}, end={end}"
        )


class SourceFeatureControl(Controller):
    """Base of controls that need source features at selected blocks and steps.

    Args:
        context: the edit's shared context.
        blocks: transformer block indexes (``None``: all).
        start, end: step window, fractions of the edit run ``[start, end)``.
        store: where source features are recorded during inversion (cache mode), or ``None``
            (recompute mode: a live source row is evaluated beside the target while active).
    """

    name = "control"

    def __init__(
        self,
        context: EditContext,
        *,
        blocks: Sequence[int] | None,
        start: float,
        end: float,
        store: FeatureStore | None,
    ) -> None:
        check_window(start, end, self.name)
        self.context = context
        self.blocks = blocks
        self.start, self.end = start, end
        self.store = store
        self._handles: list = []
        self._stash: dict[tuple, torch.Tensor] = {}
        self._stash_call = -1

    @property
    def active(self) -> bool:
        """Changing target rows now: edit phase, inside the step window."""
        return self.context.phase == "edit" and self.context.in_window(self.start, self.end)

    def wants_live_source(self) -> bool:
        """True when the next model call should carry a live source row for this control."""
        return self.store is None and self.active

    def recording(self) -> bool:
        """True when source features should be written to the store now."""
        if self.store is None or self.context.phase != "source":
            return False
        lo, hi = self.context.sigma_window(self.start, self.end)
        return lo - 1e-9 <= self.context.sigma <= hi + 1e-9

    def stash_live(self, key: tuple, tensor: torch.Tensor) -> None:
        """Keep this call's live source rows of ``tensor`` for target rows in a later chunk of the call.

        Only needed when ``max_batch_rows`` splits a call (source chunk first); references, no copies.
        """
        if self.store is not None or not self.active:
            return
        ctx = self.context
        if self._stash_call != ctx.call_id:
            self._stash.clear()
            self._stash_call = ctx.call_id
        for i, row in enumerate(ctx.rows):
            if row.side == "src":
                self._stash[(*key, row.branch)] = tensor[i]

    def source_for(self, key: tuple, index: int, live: torch.Tensor) -> torch.Tensor | None:
        """Source tensor paired with target row ``index``: a live source row, else the store."""
        ctx = self.context
        j = ctx.source_row_for(index)
        if j is not None:
            return live[j]
        branch = ctx.rows[index].branch
        if self._stash_call == ctx.call_id:
            value = self._stash.get((*key, branch), self._stash.get((*key, "cond")))
            if value is not None:
                return value
        if self.store is None:
            return None
        value = self.store.get((*key, branch), ctx.sigma, device=live.device)
        if value is None and branch != "cond":
            value = self.store.get((*key, "cond"), ctx.sigma, device=live.device)
        return None if value is None else value.to(live.dtype)

    def record(self, key: tuple, tensor: torch.Tensor) -> None:
        """Store every source row of ``tensor`` (rows along dim 0) under ``key + (branch,)``."""
        assert self.store is not None
        for i, row in enumerate(self.context.rows):
            if row.side == "src":
                self.store.put((*key, row.branch), self.context.sigma, tensor[i])

    def keep_tokens(self, device: torch.device) -> torch.Tensor | None:
        keep = self.context.token_keep
        return None if keep is None else keep.to(device)

    def on_end(self, state: LoopState) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stash.clear()


def feature_bytes_per_step(
    *, tokens: int, dim: int, blocks: int, rows: int, tensors_per_block: int, bytes_per_value: int
) -> int:
    """Bytes one step of recorded source features takes: ``tokens x dim x blocks x rows x tensors``."""
    return tokens * dim * blocks * rows * tensors_per_block * bytes_per_value


def choose_source_mode(
    mode: SourceMode, cache_bytes: int, budget_bytes: float
) -> Literal["cache", "recompute"]:
    """``auto``: cache the source features when they fit ``budget_bytes``, else recompute them live.

    Cache costs memory and no extra compute (features are recorded during the inversion that runs
    anyway); recompute costs one extra source row per model call in the control's window.
    """
    if mode == "cache" or mode == "recompute":
        return mode
    chosen: Literal["cache", "recompute"] = "cache" if cache_bytes <= budget_bytes else "recompute"
    logger.debug(
        "source features: %s (cache would take %.2f GB, budget %.2f GB)",
        chosen,
        cache_bytes / 1e9,
        budget_bytes / 1e9,
    )
    return chosen
