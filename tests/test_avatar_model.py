"""DualForce model: shapes, block-causal masks, KV-cache consistency, cache sink/window (tiny configs)."""

from __future__ import annotations

import pytest
import torch

from flowstudio.avatar.evaluation.verify import check_cache_consistency, check_shapes, random_inputs
from flowstudio.avatar.model.attention import (
    AlignedCrossAttnProcessor,
    CausalSelfAttnProcessor,
    block_causal_mask,
)
from flowstudio.avatar.model.config import toy_config
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.avatar.model.kv_cache import KVCache

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(**overrides: object) -> DualForceModel:
    torch.manual_seed(0)
    return DualForceModel(toy_config().replace(overrides)).eval()


def test_forward_shapes_match_inputs():
    shapes = check_shapes(_model(), num_chunks=2)
    assert shapes["video_out"] == shapes["video_in"] == [1, 12, 3, 8, 8]  # sink + 2 latent frames, 64px / 8
    assert shapes["struct_out"] == shapes["struct_in"] == [1, 9, 22]  # sink + 2 x 4 structure frames, 7 + 3*5
    assert shapes["audio_in"] == [1, 17, 40]  # null token + 2 x 8 audio frames


def test_towers_use_processors_not_patched_forwards():
    model = _model()
    for tower in (model.video, model.struct):
        for block in tower.blocks:
            assert isinstance(block.attn1.processor, CausalSelfAttnProcessor)
            assert isinstance(block.attn2.processor, AlignedCrossAttnProcessor)
            assert "forward" not in vars(block) and "forward" not in vars(block.attn1)


@pytest.mark.parametrize("strategy", ["shallow", "full", "none"])
def test_cached_chunked_equals_full_sequence(strategy: str):
    """Cached chunk-by-chunk forward (sink committed first, window rolling) == full block-causal forward."""
    model = _model(bridge={"strategy": strategy})
    assert len(model.bridge.layer_indices) == {"shallow": 1, "full": 2, "none": 0}[strategy]
    report = check_cache_consistency(model, num_chunks=5, seed=1)
    assert report.evicted, "5 chunks with window 3 must evict"
    assert report.video_max_abs < 1e-4, report
    assert report.struct_max_abs < 1e-4, report


def test_block_causal_no_chunk_sees_the_future():
    model = _model()
    inputs = random_inputs(model, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        v0, s0 = model(inputs)
        last = 3
        lay = inputs.layout
        inputs.video[:, :, lay.video_ids == last] += 5.0
        inputs.struct[:, lay.struct_ids == last] += 5.0
        inputs.audio[:, lay.audio_ids == last] += 5.0
        v1, s1 = model(inputs)
    early_v, early_s = lay.video_ids < last, lay.struct_ids < last
    torch.testing.assert_close(v1[:, :, early_v], v0[:, :, early_v], rtol=0, atol=1e-6)
    torch.testing.assert_close(s1[:, early_s], s0[:, early_s], rtol=0, atol=1e-6)
    assert (v1[:, :, ~early_v] - v0[:, :, ~early_v]).abs().max() > 1e-3  # the perturbed chunk did change


def test_block_causal_mask_rule():
    q = torch.tensor([0, 1, 2, 5])
    k = torch.arange(6)
    mask = block_causal_mask(q, k, window=2)
    # row q: keys k <= q and (k == 0 or k >= q - 2)
    assert mask[0].tolist() == [True, False, False, False, False, False]
    assert mask[2].tolist() == [True, True, True, False, False, False]
    assert mask[3].tolist() == [True, False, False, True, True, True]


def test_cache_sink_never_evicted_and_window_rolls():
    cache = KVCache(num_layers=2, window=2)
    for block in range(6):
        for layer in range(2):
            cache.stage(layer, torch.full((1, 3, 1, 4), float(block)), torch.full((1, 3, 1, 4), float(block)))
        cache.commit(torch.full((3,), block))
        kept = sorted(set(cache.block_ids.tolist()))
        expected = [0] + list(range(max(1, block - 1), block + 1)) if block else [0]
        assert kept == expected, f"after block {block}: kept {kept}"
        assert cache.end == block + 1 and cache.start == max(1, block + 1 - 2)
        key, value, ids = cache.read(1)
        assert key.shape[1] == value.shape[1] == len(ids)  # per-layer K/V stay aligned with the ids
        assert torch.equal(key[0, :, 0, 0], ids.float())
    cache.reset()
    assert cache.num_tokens == 0 and cache.end == 0 and cache.read(0)[0] is None


def test_commit_is_its_own_step():
    model = _model()
    inputs = random_inputs(model, 1, generator=torch.Generator().manual_seed(0))
    cache = model.new_cache()
    with torch.no_grad():
        model(inputs.select(0, 1), cache=cache)  # a denoising pass: reads, never writes
        assert cache.video.num_tokens == 0 and cache.bridge_struct.num_tokens == 0
        model(inputs.select(0, 1), cache=cache, commit=True)
    assert cache.video.num_tokens == 16 and cache.struct.num_tokens == 1  # sink frame 8x8/(2x2); sink token
    assert cache.video.layers[0].key.shape == (1, 16, 2, 16)  # (B, L, heads, head_dim), after rotary
