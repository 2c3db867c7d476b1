"""The bridge: bidirectional, block-causal cross-attention between the video and structure towers.

After layer ``i`` of both towers (for ``i`` in ``config.bridge_layers``: the first N layers for the
``shallow`` strategy, all for ``full``, none for ``none``)::

    video'  = video  + Attn(q = video,  kv = LN(struct))      # structure -> video
    struct' = struct + Attn(q = struct, kv = LN(video))       # video -> structure

both from the pre-update states (MOVA's ``DualTowerConditionalBridge`` layout: ``y_norm``, ``q k v o``,
RMS ``norm_q`` / ``norm_k``; no cross-modal rotary, as MOVA's default ``apply_cross_rope=False``).
The masks are block-causal in time like the towers, and keys are cached per bridged layer in
:attr:`DualForceCache.bridge_struct` / :attr:`DualForceCache.bridge_video`.
"""

from __future__ import annotations

import torch
from torch import nn

from flowstudio.avatar.model.attention import cached_attention
from flowstudio.avatar.model.kv_cache import KVCache


class BridgeAttention(nn.Module):
    """Cross-attention from ``dim``-wide queries to ``kv_dim``-wide conditioning tokens.

    Shapes: ``x`` ``(B, Lq, dim)``, ``y`` ``(B, Lk, kv_dim)`` -> ``(B, Lq, dim)``.
    """

    def __init__(self, dim: int, kv_dim: int, head_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.heads = max(1, dim // head_dim)
        self.y_norm = nn.LayerNorm(kv_dim, eps=eps)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim, dim)
        self.v = nn.Linear(kv_dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        q_ids: torch.Tensor,
        k_ids: torch.Tensor,
        window: int | None,
        cache: KVCache | None,
        layer: int,
        commit: bool,
        keep_sink: bool = True,
    ) -> torch.Tensor:
        y = self.y_norm(y)
        query = self.norm_q(self.q(x)).unflatten(2, (self.heads, -1))
        key = self.norm_k(self.k(y)).unflatten(2, (self.heads, -1))
        value = self.v(y).unflatten(2, (self.heads, -1))
        out = cached_attention(
            query,
            key,
            value,
            q_ids=q_ids,
            k_ids=k_ids,
            window=window,
            cache=cache,
            layer=layer,
            commit=commit,
            keep_sink=keep_sink,
        )
        return self.o(out.type_as(x))


class BridgeLayer(nn.Module):
    """One bridged layer: ``struct_to_video`` and ``video_to_struct`` attentions."""

    def __init__(self, video_dim: int, struct_dim: int, head_dim: int) -> None:
        super().__init__()
        self.struct_to_video = BridgeAttention(video_dim, struct_dim, head_dim)
        self.video_to_struct = BridgeAttention(struct_dim, video_dim, head_dim)


class Bridge(nn.Module):
    """The bridged layers, keyed by tower layer index (``layers["3"]``)."""

    def __init__(
        self, video_dim: int, struct_dim: int, head_dim: int, layer_indices: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.layer_indices = tuple(layer_indices)
        self.layers = nn.ModuleDict(
            {str(i): BridgeLayer(video_dim, struct_dim, head_dim) for i in layer_indices}
        )

    def __contains__(self, index: int) -> bool:
        return str(index) in self.layers

    def forward(
        self,
        index: int,
        video: torch.Tensor,
        struct: torch.Tensor,
        *,
        video_ids: torch.Tensor,
        struct_ids: torch.Tensor,
        window: int | None,
        struct_cache: KVCache | None = None,
        video_cache: KVCache | None = None,
        commit: bool = False,
        keep_sink: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exchange information at tower layer ``index``; returns updated ``(video, struct)``.

        ``struct_cache`` holds structure keys (read by video queries), ``video_cache`` video keys.
        """
        layer = self.layers[str(index)]
        slot = self.layer_indices.index(index)
        new_video = video + layer.struct_to_video(
            video,
            struct,
            q_ids=video_ids,
            k_ids=struct_ids,
            window=window,
            cache=struct_cache,
            layer=slot,
            commit=commit,
            keep_sink=keep_sink,
        )
        new_struct = struct + layer.video_to_struct(
            struct,
            video,
            q_ids=struct_ids,
            k_ids=video_ids,
            window=window,
            cache=video_cache,
            layer=slot,
            commit=commit,
            keep_sink=keep_sink,
        )
        return new_video, new_struct
