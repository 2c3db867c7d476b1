"""Attention K/V sharing: target queries attend to the source's keys and values.

In the self-attention of the selected blocks, during the selected steps, each target row's queries
attend to

- ``replace``: the source's keys/values instead of its own (MasaCtrl, Cao et al. 2023,
  arXiv:2304.08465: the target copies the source's appearance, its queries keep the layout), or
- ``concat``: its own keys/values followed by the source's (extended attention, as in
  Tune-A-Video / TokenFlow / RF-Solver's editing mode: the target may borrow from the source and
  still keep its own content).

Source K/V come from a live source row of the same batch or from the store filled during
inversion. Queries of target TI2V first-frame tokens keep their unshared output. The processor is
installed with ``attn.set_processor`` in ``on_start`` and the original one restored in ``on_end``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from flowstudio.edit.context import EditContext, FeatureStore
from flowstudio.edit.controls import SourceFeatureControl, resolve_blocks
from flowstudio.errors import InputError
from flowstudio.sampling import LoopState
from flowstudio.wan_attention import attend, project_qkv

ShareMode = Literal["replace", "concat"]


@dataclass(frozen=True)
class AttentionShareConfig:
    """K/V sharing settings.

    Attributes:
        mode: ``"replace"`` (source K/V only) or ``"concat"`` (own K/V + source K/V).
        blocks: transformer block indexes (negative from the end); ``None`` = every block.
        start, end: step window as fractions of the edit run, ``[start, end)``.
    """

    mode: ShareMode = "concat"
    blocks: tuple[int, ...] | None = None
    start: float = 0.0
    end: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in ("replace", "concat"):
            raise InputError(f"attention sharing mode must be 'replace' or 'concat', got {self.mode!r}")


def self_attention_qkv(
    attn: torch.nn.Module, hidden_states: torch.Tensor, rotary_emb: tuple[torch.Tensor, torch.Tensor] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised, rotated ``q, k, v`` of a ``WanAttention`` self-attention, each ``(B, S, heads, d)``."""
    return project_qkv(attn, hidden_states, rotary_emb=rotary_emb)


class SharedKVProcessor:
    """Self-attention processor of one block that shares source K/V with target rows."""

    def __init__(self, control: AttentionShare, index: int, original: object) -> None:
        self.control = control
        self.index = index
        self.original = original

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        control = self.control
        recording = control.recording()
        live = control.active and bool(control.context.source_rows()) and control.store is None
        targets = control.context.target_rows() if control.active else []
        if not recording and not targets and not live:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        q, k, v = self_attention_qkv(attn, hidden_states, rotary_emb)
        if recording:
            control.record(("k", self.index), k)
            control.record(("v", self.index), v)
        control.stash_live(("k", self.index), k)
        control.stash_live(("v", self.index), v)
        out = attend(q, k, v)
        keep = control.keep_tokens(out.device)
        for i in targets:
            k_src = control.source_for(("k", self.index), i, k)
            v_src = control.source_for(("v", self.index), i, v)
            if k_src is None or v_src is None:
                continue
            if control.config.mode == "replace":
                if keep is not None:  # the target's own first-frame keys/values stay (never touched)
                    k_src = torch.where(keep[:, None, None], k_src, k[i])
                    v_src = torch.where(keep[:, None, None], v_src, v[i])
                k_i, v_i = k_src[None], v_src[None]
            else:
                k_i, v_i = (
                    torch.cat([k[i : i + 1], k_src[None]], 1),
                    torch.cat([v[i : i + 1], v_src[None]], 1),
                )
            shared = attend(q[i : i + 1], k_i, v_i)[0]
            out[i] = shared if keep is None else torch.where(keep[:, None], shared, out[i])
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


class AttentionShare(SourceFeatureControl):
    """Controller that installs :class:`SharedKVProcessor` on the self-attention of chosen blocks."""

    name = "attention_share"

    def __init__(self, config: AttentionShareConfig, context: EditContext, store: FeatureStore | None = None):
        super().__init__(context, blocks=config.blocks, start=config.start, end=config.end, store=store)
        self.config = config
        self._restore: list[tuple[torch.nn.Module, object]] = []

    def on_start(self, state: LoopState) -> None:
        if state.model is None:
            raise InputError("attention sharing needs the model in the loop state (run_loop(model=...))")
        blocks = state.model.blocks
        for index in resolve_blocks(self.blocks, len(blocks), self.name):
            attn = blocks[index].attn1
            original = attn.processor
            self._restore.append((attn, original))
            attn.set_processor(SharedKVProcessor(self, index, original))

    def on_end(self, state: LoopState) -> None:
        for attn, original in reversed(self._restore):
            attn.set_processor(original)
        self._restore.clear()
        super().on_end(state)
