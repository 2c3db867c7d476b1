"""An explicit, typed KV cache for block-causal streaming (Self-Forcing / CausVid idea, own code).

Time is counted in *blocks*: block 0 is the reference sink (the clean reference frame, the learned
structure sink and the null audio token); block ``c + 1`` is generated chunk ``c``. A query of
block ``q`` may attend a key of block ``k`` when ``k == 0`` (sink, never evicted) or
``q - window <= k <= q`` (the rolling window of the ``window`` previous blocks and itself), see
:func:`flowstudio.avatar.model.attention.block_causal_mask`.

Each :class:`KVCache` holds, per layer, the keys (stored *after* rotary embedding) and values of the
committed blocks, plus one ``block_ids`` vector (and, for rotary caches, one ``positions`` vector)
shared by all its layers. Writing is two explicit steps:

1. during a forward with ``commit=True`` each layer calls :meth:`KVCache.stage` with the K/V of the
   current tokens (reads during that forward see only previously committed blocks plus the current
   tokens);
2. :meth:`KVCache.commit` appends every staged layer, records the block ids (and positions), and
   evicts blocks that fell out of the window (``start``/``end`` advance).

**Window-relative positions** (streams of any length). Keys are rotated at the temporal positions of
the training layout: the sink at 0, chunk frames from 1 on. Left at absolute positions, a stream
would run off the rotary table (and far outside the offsets training saw). So, as StreamingLLM and
diffusers' rolling KV cache do, eviction moves the kept keys back: when blocks holding positions
``1 .. delta`` leave, every kept non-sink key is re-rotated by ``-delta`` (``R(p) k -> R(p - delta) k``,
one elementwise rotation of the temporal rotary part) and :attr:`KVCache.shift` grows by ``delta``;
new tokens are embedded at ``absolute - shift``. The sink keeps position 0 and is never re-rotated.
The oldest kept block thus always starts at position 1, right after the sink, exactly where chunk 0
sits in a training sequence: once the window is full, every chunk sees the sink, its window and
itself at the positions of training chunk ``window`` (the first ``window + 1`` chunks are unchanged).
Relative offsets between window tokens are untouched (RoPE scores depend on ``p_q - p_k`` only); only
the sink's offset stops growing. A key lives ``window`` evictions at most, so at most ``window``
rotation roundings reach it (no drift over a long stream).

Denoising passes run with ``commit=False`` and leave the cache untouched; the clean pass at
``sigma = 0`` commits. :class:`DualForceCache` bundles the four caches the model needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

SINK_BLOCK = 0

#: ``rerotate(keys, delta)``: keys ``(B, L, heads, head_dim)`` rotated back by ``delta`` temporal
#: positions (``R(p) k -> R(p - delta) k``); supplied by the tower that rotated them.
Rerotate = Callable[[torch.Tensor, int], torch.Tensor]


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
        positions: ``(L,)`` int64 temporal position each cached key is rotated at (window-relative);
            tracked only when commits pass positions (rotary caches), else empty.
        shift: positions the kept keys were moved back so far; a new token of absolute position
            ``p`` is embedded at ``p - shift``.
        end: next block to commit (one past the newest committed block).
    """

    num_layers: int
    window: int | None
    keep_sink: bool = True
    layers: list[LayerKV] = field(default_factory=list)
    block_ids: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    positions: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    shift: int = 0
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
        self.positions = torch.zeros(0, dtype=torch.long)
        self.shift = 0
        self.end = 0

    def read(self, layer: int) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """Committed ``(key, value, block_ids)`` of ``layer``."""
        entry = self.layers[layer]
        return entry.key, entry.value, self.block_ids

    def stage(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Hold the current tokens' K/V of ``layer`` until :meth:`commit`."""
        entry = self.layers[layer]
        entry.staged_key, entry.staged_value = key.detach(), value.detach()

    def commit(
        self,
        block_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        rerotate: Rerotate | None = None,
    ) -> None:
        """Append the staged K/V of every layer as blocks ``block_ids`` (``(L_new,)``), then roll.

        ``positions`` (``(L_new,)``, the window-relative positions the staged keys were rotated at)
        and ``rerotate`` make the cache move its keys back on eviction; without them (caches of
        un-rotated keys, such as the bridge's) eviction only drops tokens.

        Layers that staged nothing (a tower without tokens in this call) must not exist: all layers of
        one cache see the same tokens.
        """
        block_ids = block_ids.to(torch.long).cpu()
        if (positions is None) != (rerotate is None):
            raise ValueError("KVCache.commit: pass positions and rerotate together (rotary keys) or neither")
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
        if positions is not None:
            self.positions = torch.cat([self.positions, positions.to(torch.long).cpu()])
        self.end = max(self.end, int(block_ids.max()) + 1)
        self.evict(rerotate)

    def evict(self, rerotate: Rerotate | None = None) -> None:
        """Drop blocks older than :attr:`start`; the sink block is never dropped when ``keep_sink``.

        With ``rerotate`` (rotary keys with tracked positions): the dropped non-sink blocks held the
        ``delta`` positions ``first .. first + delta - 1`` (blocks are committed in order and laid out
        contiguously, the first from position 1); every kept non-sink key is re-rotated by ``-delta``
        so that the oldest kept block starts at ``first`` (1) again, and :attr:`shift` grows by
        ``delta``.
        """
        keep = self.block_ids >= self.start
        if self.keep_sink:
            keep |= self.block_ids == SINK_BLOCK
        if bool(keep.all()):
            return
        delta = 0
        if rerotate is not None:
            dropped = ~keep & (self.block_ids != SINK_BLOCK)
            if bool(dropped.any()):
                gone = self.positions[dropped]
                delta = int(gone.max()) - int(gone.min()) + 1
        index = torch.nonzero(keep).squeeze(1)
        kept_ids = self.block_ids[keep]
        moved = kept_ids != SINK_BLOCK
        for entry in self.layers:
            if entry.key is not None and entry.value is not None:
                device_index = index.to(entry.key.device)
                entry.key = entry.key.index_select(1, device_index)
                entry.value = entry.value.index_select(1, device_index)
                if delta and rerotate is not None:
                    # Rotate the whole tensor and keep the sink's rows as they were (bitwise).
                    rows = moved.to(entry.key.device)[None, :, None, None]
                    entry.key = torch.where(rows, rerotate(entry.key, delta), entry.key)
        if rerotate is not None:
            self.positions = torch.where(moved, self.positions[keep] - delta, self.positions[keep])
            self.shift += delta
        self.block_ids = kept_ids

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

    def commit(
        self,
        video_ids: torch.Tensor,
        struct_ids: torch.Tensor,
        *,
        video_positions: torch.Tensor | None = None,
        struct_positions: torch.Tensor | None = None,
        rerotate_video: Rerotate | None = None,
        rerotate_struct: Rerotate | None = None,
    ) -> None:
        """Commit staged K/V: video-token caches get ``video_ids``, structure-token caches ``struct_ids``.

        The towers' self-attention keys are rotary: with their (window-relative) positions and the
        towers' ``rerotate`` they move back on eviction. The bridge's keys carry no rotary embedding
        (MOVA's ``apply_cross_rope=False``) and are only dropped.
        """
        self.video.commit(video_ids, video_positions, rerotate_video)
        self.struct.commit(struct_ids, struct_positions, rerotate_struct)
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
