"""An explicit, typed KV cache for block-causal streaming (Self-Forcing / CausVid idea, own code).

Time is counted in *blocks*: block 0 is the reference sink (the clean reference frame, the learned
structure sink and the null audio token); block ``c + 1`` is generated chunk ``c``. A query of
block ``q`` may attend a key of block ``k`` when ``k == 0`` (sink, never evicted) or
``q - window <= k <= q`` (the rolling window of the ``window`` previous blocks and itself), see
:func:`flowstudio.avatar.model.attention.block_causal_mask`.

Each :class:`KVCache` holds, per layer, the keys (stored *after* rotary embedding, so they never need
re-rotation while their absolute positions stay valid) and values of the committed blocks, plus one
``block_ids`` vector shared by all its layers. Writing is two explicit steps:

1. during a forward with ``commit=True`` each layer calls :meth:`KVCache.stage` with the K/V of the
   current tokens (reads during that forward see only previously committed blocks plus the current
   tokens);
2. :meth:`KVCache.commit` appends every staged layer, records the block ids, and evicts blocks that
   fell out of the window (``start``/``end`` advance).

Denoising passes run with ``commit=False`` and leave the cache untouched; the clean pass at
``sigma = 0`` commits. :class:`DualForceCache` bundles the four caches the model needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

SINK_BLOCK = 0


@dataclass
class LayerKV:
    """Committed keys/values of one attention layer, ``(B, L, heads, head_dim)``; ``None`` when empty."""

    key: torch.Tensor | None = None
    value: torch.Tensor | None = None
    staged_key: torch.Tensor | None = None
    staged_value: torch.Tensor | None = None


@dataclass
class KVCache:
    """Per-layer K/V of committed blocks with a never-evicted sink and a rolling window.

    Attributes:
        num_layers: layers sized from the model config.
        window: previous blocks kept besides the sink; ``None`` keeps everything.
        keep_sink: never evict the sink block (False: the no-sink ablation evicts it like any block).
        layers: one :class:`LayerKV` per layer.
        block_ids: ``(L,)`` int64 block id of every cached token (same for all layers).
        end: next block to commit (one past the newest committed block).
    """

    num_layers: int
    window: int | None
    keep_sink: bool = True
    layers: list[LayerKV] = field(default_factory=list)
    block_ids: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    end: int = 0

    def __post_init__(self) -> None:
        if not self.layers:
            self.layers = [LayerKV() for _ in range(self.num_layers)]

    @property
    def start(self) -> int:
        """Oldest non-sink block a new query may still see (``end - window``, at least 1; at least 0
        without a kept sink)."""
        floor = 1 if self.keep_sink else 0
        if self.window is None:
            return floor
        return max(floor, self.end - self.window)

    @property
    def num_tokens(self) -> int:
        return int(self.block_ids.numel())

    def reset(self) -> None:
        """Forget everything (new stream)."""
        self.layers = [LayerKV() for _ in range(self.num_layers)]
        self.block_ids = torch.zeros(0, dtype=torch.long)
        self.end = 0

    def read(self, layer: int) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """Committed ``(key, value, block_ids)`` of ``layer``."""
        entry = self.layers[layer]
        return entry.key, entry.value, self.block_ids

    def stage(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Hold the current tokens' K/V of ``layer`` until :meth:`commit`."""
        entry = self.layers[layer]
        entry.staged_key, entry.staged_value = key.detach(), value.detach()

    def commit(self, block_ids: torch.Tensor) -> None:
        """Append the staged K/V of every layer as blocks ``block_ids`` (``(L_new,)``), then roll.

        Layers that staged nothing (a tower without tokens in this call) must not exist: all layers of
        one cache see the same tokens.
        """
        block_ids = block_ids.to(torch.long).cpu()
        for index, entry in enumerate(self.layers):
            if entry.staged_key is None or entry.staged_value is None:
                raise RuntimeError(f"KVCache.commit: layer {index} staged no K/V in this forward")
            if entry.key is None or entry.value is None:
                entry.key, entry.value = entry.staged_key, entry.staged_value
            else:
                entry.key = torch.cat([entry.key, entry.staged_key], dim=1)
                entry.value = torch.cat([entry.value, entry.staged_value], dim=1)
            entry.staged_key = entry.staged_value = None
        self.block_ids = torch.cat([self.block_ids, block_ids])
        self.end = max(self.end, int(block_ids.max()) + 1)
        self.evict()

    def evict(self) -> None:
        """Drop blocks older than :attr:`start`; the sink block is never dropped when ``keep_sink``."""
        keep = self.block_ids >= self.start
        if self.keep_sink:
            keep |= self.block_ids == SINK_BLOCK
        if bool(keep.all()):
            return
        index = torch.nonzero(keep).squeeze(1)
        for entry in self.layers:
            if entry.key is not None and entry.value is not None:
                device_index = index.to(entry.key.device)
                entry.key = entry.key.index_select(1, device_index)
                entry.value = entry.value.index_select(1, device_index)
        self.block_ids = self.block_ids[keep]

    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for e in self.layers for t in (e.key, e.value) if t is not None
        )


@dataclass
class DualForceCache:
    """The four caches of a DualForce stream: tower self-attention and the two bridge directions.

    ``bridge_struct`` holds keys computed from *structure* tokens, read by video queries;
    ``bridge_video`` holds keys from *video* tokens, read by structure queries.
    """

    video: KVCache
    struct: KVCache
    bridge_struct: KVCache
    bridge_video: KVCache

    @classmethod
    def create(
        cls,
        video_layers: int,
        struct_layers: int,
        bridge_layers: int,
        window: int | None,
        keep_sink: bool = True,
    ) -> DualForceCache:
        return cls(
            KVCache(video_layers, window, keep_sink),
            KVCache(struct_layers, window, keep_sink),
            KVCache(bridge_layers, window, keep_sink),
            KVCache(bridge_layers, window, keep_sink),
        )

    def caches(self) -> tuple[KVCache, ...]:
        return self.video, self.struct, self.bridge_struct, self.bridge_video

    def commit(self, video_ids: torch.Tensor, struct_ids: torch.Tensor) -> None:
        """Commit staged K/V: video-token caches get ``video_ids``, structure-token caches ``struct_ids``."""
        self.video.commit(video_ids)
        self.struct.commit(struct_ids)
        if self.bridge_struct.num_layers:
            self.bridge_struct.commit(struct_ids)
            self.bridge_video.commit(video_ids)

    def reset(self) -> None:
        for cache in self.caches():
            cache.reset()

    @property
    def end(self) -> int:
        return self.video.end

    def nbytes(self) -> int:
        return sum(cache.nbytes() for cache in self.caches())
