"""Streams of any length: the KV cache re-rotates kept keys to window-relative positions on eviction.

Tiny random toy models on CPU. The old limit (keys at absolute positions, a stream stops at the end of
the rotary table) is reached here with a rotary table of 24 positions instead of 16384.
"""

from __future__ import annotations

import pytest
import torch

from flowstudio.avatar.evaluation.verify import check_cache_consistency, random_inputs
from flowstudio.avatar.inference.streaming import stream_latents
from flowstudio.avatar.model.config import toy_config
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.avatar.model.kv_cache import SINK_BLOCK, KVCache
from flowstudio.avatar.model.rates import BlockLayout
from flowstudio.avatar.model.towers import rotary_for
from flowstudio.errors import InputError
from flowstudio.wan_attention import apply_rotary

# Cached streaming against the full recompute in the same layout, float32: measured 5e-7 .. 8e-7
# after 9 evictions (the re-rotation and the two attention orders round differently).
TOLERANCE = 5e-6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(overrides: dict | None = None, seed: int = 0) -> DualForceModel:
    torch.manual_seed(seed)
    config = toy_config().replace(overrides) if overrides else toy_config()
    return DualForceModel(config).eval()


def test_rerotation_moves_kept_keys_back_and_leaves_the_sink():
    """After every eviction the cached keys equal ``R(p - shift) k`` freshly rotated, with the sink at
    0 untouched bit for bit and the oldest kept block at position 1."""
    tower = _model().video
    heads, head_dim = 2, tower.config.head_dim
    cache = KVCache(num_layers=1, window=2)
    raw_keys: list[torch.Tensor] = []
    abs_positions: list[torch.Tensor] = []
    generator = torch.Generator().manual_seed(0)
    for block in range(7):  # the sink, then 6 blocks of 2 positions x 3 tokens each
        if block == 0:
            absolute = torch.zeros(3, dtype=torch.long)
        else:
            absolute = 1 + 2 * (block - 1) + torch.tensor([0, 0, 1])
        position = absolute if block == 0 else absolute - cache.shift
        raw = torch.randn(1, len(absolute), heads, head_dim, generator=generator)
        cos, sin = rotary_for(tower.rope, position, 1, 1)
        cache.stage(0, apply_rotary(raw, cos, sin), raw)
        cache.commit(torch.full((len(absolute),), block), position, tower.rerotate)
        raw_keys.append(raw)
        abs_positions.append(absolute)

        kept = sorted(set(cache.block_ids.tolist()))
        assert kept == [0, *range(max(1, block - 1), block + 1)]
        raw_kept = torch.cat([raw_keys[b] for b in kept], dim=1)
        expected_pos = torch.cat([abs_positions[b] - (cache.shift if b else 0) for b in kept])
        assert torch.equal(cache.positions, expected_pos)
        non_sink = cache.positions[cache.block_ids != SINK_BLOCK]
        if block:
            assert int(non_sink.min()) == 1, "the oldest kept block must start right after the sink"
        cos, sin = rotary_for(tower.rope, expected_pos, 1, 1)
        fresh = apply_rotary(raw_kept, cos, sin)
        key = cache.read(0)[0]
        assert key is not None
        err = float((key - fresh).abs().max())
        assert err < 1e-6, f"R(p) k re-rotated by -delta must equal R(p - delta) k; max error {err:.2e}"
        sink = cache.block_ids == SINK_BLOCK
        assert torch.equal(key[:, sink], raw_keys[0]), "the sink stays at position 0, never re-rotated"
    assert cache.shift == 2 * (6 - 2)  # 4 blocks of 2 positions left the window


def test_stream_runs_past_the_rotary_table_with_flat_memory():
    """A rotary table of 24 positions: absolute positions stop after 5 chunks (structure: 4 frames per
    chunk); the stream runs 40 chunks (161 absolute structure positions) with a flat cache."""
    small = {"video": {"rope_max_positions": 24}, "struct": {"rope_max_positions": 24}}
    model = _model(small)
    with pytest.raises(InputError, match="exceeds the rotary table"), torch.no_grad():
        model(random_inputs(model, 40, generator=torch.Generator().manual_seed(0)))  # absolute positions
    cfg, rates = model.config, model.rates
    h, w = cfg.latent_size
    reference = torch.randn(
        1, cfg.video_input.latent_channels, 1, h, w, generator=torch.Generator().manual_seed(1)
    )
    chunks = 40
    audio = torch.randn(rates.span(chunks - 1).audio[1], cfg.audio.feature_dim)
    infos: list[dict[str, float]] = []
    outputs = list(stream_latents(model, reference, audio, steps=1, callback=infos.append))
    assert len(outputs) == chunks and rates.span(chunks - 1).struct[1] == 160  # absolute, table: 24
    assert all(bool(torch.isfinite(c.video).all() and torch.isfinite(c.struct).all()) for c in outputs)
    window = cfg.forcing.window_chunks
    steady = infos[window:]
    assert len({i["cache_bytes"] for i in steady}) == 1, "cache tensors must not grow once the window is full"
    per_frame = (h // 2) * (w // 2)
    assert {i["cache_tokens"] for i in steady} == {(1 + window) * rates.frames_per_chunk * per_frame}
    assert max(i["cache_bytes"] for i in infos) == steady[0]["cache_bytes"]
    assert infos[-1]["position_shift"] == (chunks - window) * rates.frames_per_chunk


@pytest.mark.parametrize(
    "overrides",
    [None, {"rates": {"frames_per_chunk": 2}}, {"forcing": {"reference_sink": False, "window_chunks": 1}}],
    ids=["toy", "two-frame-chunks", "no-sink-window-1"],
)
def test_cached_equals_full_window_recompute_after_many_evictions(overrides):
    """10 chunks (window 3 or 1: 6 or more evictions, each re-rotating the kept keys): every cached call
    equals the full block-causal forward in the window-relative layout within 5e-6 (float32)."""
    model = _model(overrides)
    report = check_cache_consistency(model, num_chunks=10, seed=2, tolerance=TOLERANCE)
    assert report.evicted
    assert report.ok, report


def test_window_layout_differs_from_absolute_only_after_the_first_eviction():
    """The comparison above can tell layouts apart: the absolute (training) forward equals the
    window-relative one for blocks that never lost a block from their window, and differs after."""
    model = _model()
    inputs = random_inputs(model, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        absolute = model(inputs)
        relative = model(inputs, window_positions=True)
    window = model.config.forcing.window_chunks
    for block in range(9):
        rows = torch.nonzero(inputs.layout.video_ids == block).squeeze(1)
        gap = float((absolute[0].index_select(2, rows) - relative[0].index_select(2, rows)).abs().max())
        if block <= window + 1:
            assert gap < 1e-6, (block, gap)
        else:
            assert gap > 1e-4, (block, gap)


def test_steady_state_positions_are_those_of_a_training_sequence():
    """Once the window is full, the cache holds the sink and its window at the positions of training
    blocks ``0 .. window`` and the next chunk is embedded where training block ``window + 1`` sits."""
    model = _model({"rates": {"frames_per_chunk": 2}})
    rates, window = model.rates, model.config.forcing.window_chunks
    inputs = random_inputs(model, 9, generator=torch.Generator().manual_seed(4))
    cache = model.new_cache()
    per_frame = (model.config.latent_size[0] // 2) * (model.config.latent_size[1] // 2)
    training = BlockLayout.build(rates, 0, window + 1, sink=True)  # sink + chunks 0 .. window
    with torch.no_grad():
        for block in range(9):
            model(inputs.select(block, block + 1), cache=cache, commit=True)
    held = BlockLayout.build(rates, 0, window, sink=True)
    assert torch.equal(cache.video.positions, held.video_pos.repeat_interleave(per_frame))
    assert torch.equal(cache.struct.positions, held.struct_pos)
    nxt = BlockLayout.build(rates, 8, 9, sink=False)  # chunk 8 = block 9, the next one
    last = training.video_ids == window + 1
    assert torch.equal(nxt.video_pos - cache.video.shift, training.video_pos[last])
    assert torch.equal(
        nxt.struct_pos - cache.struct.shift, training.struct_pos[training.struct_ids == window + 1]
    )
