"""Audio features at 50 Hz (log-mel and HuBERT from a local folder) and the conditioning module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flowstudio.avatar.model.audio import (
    AudioConditioningModule,
    HubertExtractor,
    LogMelExtractor,
    make_extractor,
)
from flowstudio.avatar.model.config import AudioConfig
from flowstudio.errors import CheckpointError, InputError


def test_logmel_is_50_hz():
    wave = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32)
    feats = LogMelExtractor(40)(wave, 16000)
    assert feats.shape == (100, 40)  # 2 s x 50 Hz
    feats_48k = LogMelExtractor(40)(np.repeat(wave, 3), 48000)  # any input rate, same feature rate
    assert feats_48k.shape == (100, 40)
    with pytest.raises(InputError, match="audio too short"):
        LogMelExtractor(40)(wave[:100], 16000)


def test_hubert_from_local_folder_is_frozen_and_50_hz(tmp_path: Path):
    from transformers import HubertConfig, HubertModel

    cfg = HubertConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(8, 8, 8, 8, 8, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    HubertModel(cfg).save_pretrained(tmp_path / "hubert")
    extractor = make_extractor(
        AudioConfig(feature="hubert", feature_dim=32, hubert_path=str(tmp_path / "hubert"))
    )
    assert isinstance(extractor, HubertExtractor)
    assert not any(p.requires_grad for p in extractor.model.parameters()) and not extractor.model.training
    feats = extractor(np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000)
    assert feats.shape == (50, 32)  # 1 s at 50 Hz, same interface as log-mel
    with pytest.raises(CheckpointError, match="no config.json"):
        HubertExtractor(tmp_path / "nowhere")


def test_conditioning_tokens_per_block_and_null_sink():
    torch.manual_seed(0)
    module = AudioConditioningModule(
        feature_dim=6, hidden_dim=8, video_dim=12, struct_dim=10, tokens_per_block=8
    )
    ids = torch.tensor([0] + [1] * 8 + [2] * 8)
    feats = torch.randn(2, 17, 6)
    to_video, to_struct = module(feats, ids)
    assert to_video.shape == (2, 17, 12) and to_struct.shape == (2, 17, 10)
    other = feats.clone()
    other[:, 0] += 10  # the sink row is ignored: it is the learned null token
    torch.testing.assert_close(module(other, ids)[0], to_video)
    # a chunk computed alone gives the same tokens as inside the whole sequence
    alone, _ = module(feats[:, 9:], ids[9:])
    torch.testing.assert_close(alone, to_video[:, 9:])


@pytest.mark.parametrize("struct_trains_encoder", [True, False])
def test_the_structure_towers_gradient_reaches_the_shared_encoder_only_when_asked(struct_trains_encoder):
    """``struct_trains_encoder=False``: the same tokens, but a loss on the structure tokens trains only
    the structure projection, never the shared MLP and positions (the video tower's loss still does)."""
    torch.manual_seed(0)
    kwargs = dict(feature_dim=6, hidden_dim=8, video_dim=12, struct_dim=10, tokens_per_block=8)
    module = AudioConditioningModule(**kwargs, struct_trains_encoder=struct_trains_encoder)
    reference = AudioConditioningModule(**kwargs)
    reference.load_state_dict(module.state_dict())
    ids = torch.tensor([0] + [1] * 8 + [2] * 8)
    feats = torch.randn(2, 17, 6)
    to_video, to_struct = module(feats, ids)
    for ours, theirs in zip((to_video, to_struct), reference(feats, ids), strict=True):
        torch.testing.assert_close(ours, theirs)
    to_struct.square().sum().backward(retain_graph=True)
    shared = [module.mlp[0].weight, module.position]
    assert module.to_struct.weight.grad.abs().sum() > 0
    assert all((p.grad is not None and p.grad.abs().sum() > 0) == struct_trains_encoder for p in shared)
    module.zero_grad(set_to_none=True)
    to_video.square().sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in shared)
