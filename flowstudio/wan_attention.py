"""Helpers for attention processors on diffusers' ``WanAttention`` (editing controls, DualForce).

Processors replace diffusers' ``WanAttnProcessor`` through ``set_processor``; these helpers compute
what it computes (normalised, rotated projections, softmax attention), so that each processor only
writes what it changes. Shapes: ``(B, S, heads, head_dim)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's interleaved rotary embedding on ``(B, S, H, D)``, as diffusers' ``WanAttnProcessor``."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


def project_qkv(
    attn: torch.nn.Module,
    hidden_states: torch.Tensor,
    context: torch.Tensor | None = None,
    rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised (and, given ``rotary_emb``, rotated) ``q, k, v``, each ``(B, S, heads, d)``.

    ``context`` is the key/value source of cross-attention; ``None`` means self-attention (which may
    use diffusers' fused ``to_qkv`` projection).
    """
    if context is None and getattr(attn, "fused_projections", False):
        q, k, v = attn.to_qkv(hidden_states).chunk(3, dim=-1)
    else:
        source = hidden_states if context is None else context
        q, k, v = attn.to_q(hidden_states), attn.to_k(source), attn.to_v(source)
    q, k = attn.norm_q(q), attn.norm_k(k)
    q, k, v = (t.unflatten(2, (attn.heads, -1)) for t in (q, k, v))
    if rotary_emb is not None:
        q, k = apply_rotary(q, *rotary_emb), apply_rotary(k, *rotary_emb)
    return q, k, v


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention on ``(B, S, heads, d)`` tensors; returns ``(B, S_q, heads * d)``."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2).flatten(2, 3).type_as(q)
