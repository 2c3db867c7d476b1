"""Block-causal attention on top of diffusers' ``WanAttention``, through attention processors.

Each tower installs two processors (``attn.set_processor``) on diffusers' ``WanAttention``. The
processors hold no per-call state: the tower runs its blocks through
:func:`flowstudio.avatar.model.towers.run_wan_block`, which calls the attentions with an explicit
``call=`` :class:`AttentionCall` (block ids, window, the caller's KV cache, whether to commit). The
call object lives for one forward and belongs to the caller, so one model can serve several
interleaved streams, each with its own cache:

* :class:`CausalSelfAttnProcessor` - Wan's projections, RMS q/k norm and rotary embedding, then
  attention over ``[cached K/V of committed blocks, current K/V]`` under :func:`block_causal_mask`;
  with ``call.commit`` it stages the current (post-rotary) K/V in the cache. A full-sequence call
  with ``call.sink_rotations`` attends in the streaming cache's window-relative layout
  (:func:`window_relative_attention`).
* :class:`AlignedCrossAttnProcessor` - audio cross-attention where every token sees only the audio
  tokens of its own block (:func:`same_block_mask`): a chunk hears exactly its own time span.

Masked attention runs through ``torch.nn.functional.scaled_dot_product_attention`` with a boolean
mask (flash kernels take no arbitrary masks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from flowstudio.avatar.model.kv_cache import SINK_BLOCK, KVCache
from flowstudio.wan_attention import apply_rotary, project_qkv

#: ``((block, (cos, sin)), ...)``: per query block, the rotation that moves the sink's keys forward.
SinkRotations = tuple[tuple[int, tuple[torch.Tensor, torch.Tensor]], ...]


def block_causal_mask(
    q_ids: torch.Tensor, k_ids: torch.Tensor, window: int | None, keep_sink: bool = True
) -> torch.Tensor:
    """``(Lq, Lk)`` bool, True where a query of block ``q`` may attend a key of block ``k``.

    ``k <= q`` and (``k == 0`` (sink, when ``keep_sink``) or ``k >= q - window``). Within a block
    attention is full. ``keep_sink=False`` (the no-sink ablation) lets the reference block leave the
    window like any other block.
    """
    q = q_ids[:, None]
    k = k_ids[None, :]
    allowed = k <= q
    if window is not None:
        in_window = k >= q - window
        allowed &= ((k == SINK_BLOCK) | in_window) if keep_sink else in_window
    return allowed


def same_block_mask(q_ids: torch.Tensor, k_ids: torch.Tensor) -> torch.Tensor:
    """``(Lq, Lk)`` bool, True where query and key belong to the same block (same time span)."""
    return q_ids[:, None] == k_ids[None, :]


def masked_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """SDPA on ``(B, L, heads, head_dim)`` tensors with a ``(Lq, Lk)`` bool mask.

    Returns ``(B, Lq, heads * head_dim)``.
    """
    out = F.scaled_dot_product_attention(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask=mask.to(query.device)
    )
    return out.transpose(1, 2).flatten(2, 3)


def cached_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    q_ids: torch.Tensor,
    k_ids: torch.Tensor,
    window: int | None,
    cache: KVCache | None,
    layer: int,
    commit: bool,
    keep_sink: bool = True,
) -> torch.Tensor:
    """Block-causal attention of the current tokens over ``[cache, current]``.

    Args:
        query: ``(B, Lq, heads, hd)``; key/value: ``(B, Lk, heads, hd)`` of the current tokens.
        q_ids / k_ids: block id per query / current key token, ``(Lq,)`` / ``(Lk,)``.
        cache: committed blocks of this attention (``None`` for a full-sequence forward).
        commit: stage the current K/V in ``cache`` (the clean pass).
    """
    all_k, all_v, all_ids = key, value, k_ids
    if cache is not None:
        old_k, old_v, old_ids = cache.read(layer)
        if old_k is not None and old_v is not None:
            all_k = torch.cat([old_k.to(key.dtype), key], dim=1)
            all_v = torch.cat([old_v.to(value.dtype), value], dim=1)
            all_ids = torch.cat([old_ids.to(k_ids.device), k_ids])
        if commit:
            cache.stage(layer, key, value)
    mask = block_causal_mask(q_ids, all_ids, window, keep_sink)
    return masked_attention(query, all_k, all_v, mask)


def window_relative_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    ids: torch.Tensor,
    window: int | None,
    keep_sink: bool,
    sink_rotations: SinkRotations,
) -> torch.Tensor:
    """Full-sequence block-causal self-attention in the streaming cache's window-relative layout.

    ``query`` / ``key`` / ``value``: ``(B, L, heads, hd)`` of all tokens, rotated at absolute
    positions; ``ids``: ``(L,)`` block ids. In the streaming cache a query block whose window starts
    at block ``b > 1`` sees its window and itself moved back by ``s`` positions while the sink stays at
    0 (:mod:`flowstudio.avatar.model.kv_cache`). RoPE scores depend on ``p_q - p_k`` only, so that is the
    same as leaving every non-sink token where it is and moving the sink's keys *forward* by ``s``:
    ``sink_rotations`` holds that rotation for each such block; the other blocks attend exactly as in
    the absolute layout. A second computation of the same attention, used as the full-recompute
    reference of the cache (:func:`flowstudio.avatar.evaluation.verify.check_cache_consistency`).
    Returns ``(B, L, heads * hd)``.
    """
    mask = block_causal_mask(ids, ids, window, keep_sink).to(query.device)
    out = masked_attention(query, key, value, mask)
    sink = torch.nonzero(ids == SINK_BLOCK).squeeze(1).to(key.device)
    for block, (cos, sin) in sink_rotations:
        rows = (ids == block).to(query.device)
        moved = key.clone()
        moved[:, sink] = apply_rotary(key[:, sink], cos.to(key.device), sin.to(key.device))
        out[:, rows] = masked_attention(query[:, rows], moved, value, mask[rows])
    return out


@dataclass(frozen=True)
class AttentionCall:
    """What a tower's processors need for one forward call, passed to them as ``call=``.

    Built by the model per forward and dropped afterwards; nothing of it is stored on the model.

    Attributes:
        q_ids: ``(L,)`` block id of every token of the tower in this call.
        context_ids: ``(A,)`` block id of every conditioning (audio) token.
        window: rolling-window size in blocks (``None``: unbounded causal).
        keep_sink: the reference block stays visible outside the window (False: no-sink ablation).
        cache: the tower's self-attention cache (owned by the caller), or ``None`` for a
            full-sequence forward.
        commit: stage current K/V in ``cache``.
        sink_rotations: for a full-sequence forward in window-relative positions (no cache), the
            sink rotation of every query block whose window has rolled
            (:func:`window_relative_attention`); empty: absolute positions.
    """

    q_ids: torch.Tensor
    context_ids: torch.Tensor
    window: int | None = None
    keep_sink: bool = True
    cache: KVCache | None = None
    commit: bool = False
    sink_rotations: SinkRotations = ()


def _need_call(call: AttentionCall | None) -> AttentionCall:
    if call is None:
        raise RuntimeError(
            "DualForce attention processors need call=AttentionCall(...); run the tower's blocks "
            "through Tower.block / run_wan_block, not WanTransformerBlock.forward"
        )
    return call


class CausalSelfAttnProcessor:
    """Self-attention processor for ``WanAttention``: block-causal mask plus per-layer KV cache.

    Stateless apart from its layer index; the mask inputs and the cache come in ``call``.
    """

    def __init__(self, layer: int) -> None:
        self.layer = layer

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        call: AttentionCall | None = None,
    ) -> torch.Tensor:
        call = _need_call(call)
        query, key, value = project_qkv(attn, hidden_states, rotary_emb=rotary_emb)
        if call.sink_rotations:
            if call.cache is not None:
                raise ValueError("sink_rotations are for full-sequence calls; a cache holds its own layout")
            out = window_relative_attention(
                query,
                key,
                value,
                ids=call.q_ids,
                window=call.window,
                keep_sink=call.keep_sink,
                sink_rotations=call.sink_rotations,
            )
        else:
            out = cached_attention(
                query,
                key,
                value,
                q_ids=call.q_ids,
                k_ids=call.q_ids,
                window=call.window,
                cache=call.cache,
                layer=self.layer,
                commit=call.commit,
                keep_sink=call.keep_sink,
            )
        out = attn.to_out[0](out.type_as(query))
        return attn.to_out[1](out)


class AlignedCrossAttnProcessor:
    """Cross-attention processor for ``WanAttention``: each token attends the context (audio) tokens
    of its own block only (block ids from ``call``)."""

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        call: AttentionCall | None = None,
    ) -> torch.Tensor:
        call = _need_call(call)
        assert encoder_hidden_states is not None
        query, key, value = project_qkv(attn, hidden_states, encoder_hidden_states)
        out = masked_attention(query, key, value, same_block_mask(call.q_ids, call.context_ids))
        out = attn.to_out[0](out.type_as(query))
        return attn.to_out[1](out)
