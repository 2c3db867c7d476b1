"""The bridge: bidirectional, block-causal cross-attention between the video and structure towers.

After layer ``i`` of both towers (for ``i`` in ``config.bridge_layers``: the first N layers for the
``shallow`` strategy, all for ``full``, none for ``none``)::

    video'  = video  + Attn(q = video,  kv = LN(struct))      # structure -> video
    struct' = struct + Attn(q = struct, kv = LN(video))       # video -> structure

both from the pre-update states (MOVA's ``DualTowerConditionalBridge`` layout: ``y_norm``, ``q k v o``,
RMS ``norm_q`` / ``norm_k``; no cross-modal rotary, as MOVA's default ``apply_cross_rope=False``).
The masks are block-causal in time like the towers, and keys are cached per bridged layer in
:attr:`DualForceCache.bridge_struct` / :attr:`DualForceCache.bridge_video`.

With ``bridge.frame_aligned`` a third, position-exact path joins them at each bridged layer::

    video'[frame j] += W [LN(struct[4j]), LN(struct[4j+1]), LN(struct[4j+2]), LN(struct[4j+3])]

(:class:`FrameAlignedStructure`, ``W`` zero-initialised). It reads only the structure frames of
the video frame's own time span, which are always computed in the same call as the video frame (a
chunk's two modalities are denoised together), so it needs no cache.
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


class FrameAlignedStructure(nn.Module):
    """Structure -> video along time: each latent frame's tokens get a projection of its own
    ``per_latent`` structure frames, concatenated in time order.

    Why: the bridge's cross-attention has no positions, so a video token sees its chunk's structure
    frames as an unordered set (and its window's earlier chunks mixed in); it can follow the chunk's
    mean pose at best, not frame by frame. The projection is zero-initialised, so adding the path
    starts from the plain bridge.
    """

    def __init__(self, video_dim: int, struct_dim: int, per_latent: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.per_latent = per_latent
        self.norm = nn.LayerNorm(struct_dim, eps=eps)
        self.proj = nn.Linear(per_latent * struct_dim, video_dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, video: torch.Tensor, struct: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``video`` ``(B, F * per_frame, dim)`` plus the aligned update; ``struct`` ``(B, S, C)``;
        ``rows`` ``(F, per_latent)`` structure token indices of every video frame (``-1``: none, e.g.
        the reference sink, which gets no update)."""
        frames = rows.shape[0]
        has = (rows >= 0).all(1)
        gathered = self.norm(struct)[:, rows.clamp_min(0).flatten()]  # (B, F * per_latent, C)
        update = self.proj(gathered.unflatten(1, (frames, self.per_latent)).flatten(2))  # (B, F, dim)
        update = update * has.to(update.dtype)[None, :, None]
        return video + update.repeat_interleave(video.shape[1] // frames, dim=1)


def aligned_struct_rows(video_pos: torch.Tensor, struct_owner: torch.Tensor, per_latent: int) -> torch.Tensor:
    """``(F, per_latent)`` indices of the structure tokens whose owner (video position) is each video
    frame's position, in time order; ``-1`` rows for frames without exactly ``per_latent`` of them."""
    rows = torch.full((video_pos.shape[0], per_latent), -1, dtype=torch.long)
    for f, pos in enumerate(video_pos.tolist()):
        found = torch.nonzero(struct_owner == pos).squeeze(1)
        if pos != 0 and found.numel() == per_latent:
            rows[f] = found
    return rows


class BridgeLayer(nn.Module):
    """One bridged layer: ``struct_to_video`` and ``video_to_struct`` attentions, plus the optional
    ``struct_to_video_frames`` (:class:`FrameAlignedStructure`)."""

    def __init__(self, video_dim: int, struct_dim: int, head_dim: int, aligned_per_latent: int = 0) -> None:
        super().__init__()
        self.struct_to_video = BridgeAttention(video_dim, struct_dim, head_dim)
        self.video_to_struct = BridgeAttention(struct_dim, video_dim, head_dim)
        if aligned_per_latent:
            self.struct_to_video_frames = FrameAlignedStructure(video_dim, struct_dim, aligned_per_latent)


class Bridge(nn.Module):
    """The bridged layers, keyed by tower layer index (``layers["3"]``)."""

    def __init__(
        self,
        video_dim: int,
        struct_dim: int,
        head_dim: int,
        layer_indices: tuple[int, ...],
        aligned_per_latent: int = 0,
    ) -> None:
        super().__init__()
        self.layer_indices = tuple(layer_indices)
        self.aligned_per_latent = aligned_per_latent  # 0: no frame-aligned path
        self.layers = nn.ModuleDict(
            {str(i): BridgeLayer(video_dim, struct_dim, head_dim, aligned_per_latent) for i in layer_indices}
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
        aligned_rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exchange information at tower layer ``index``; returns updated ``(video, struct)``.

        ``struct_cache`` holds structure keys (read by video queries), ``video_cache`` video keys.
        ``aligned_rows``: :func:`aligned_struct_rows` of this call, needed when the frame-aligned
        path exists.
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
        if self.aligned_per_latent:
            if aligned_rows is None:
                raise ValueError("this bridge has a frame-aligned path; pass aligned_rows")
            new_video = layer.struct_to_video_frames(new_video, struct, aligned_rows.to(struct.device))
        return new_video, new_struct
