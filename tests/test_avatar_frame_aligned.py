"""The bridge's frame-aligned structure -> video path (``bridge.frame_aligned``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowstudio.avatar.evaluation.verify import check_cache_consistency, random_inputs
from flowstudio.avatar.model.bridge import FrameAlignedStructure, aligned_struct_rows
from flowstudio.avatar.model.config import load_config, toy_config
from flowstudio.avatar.model.dualforce import DualForceInputs, DualForceModel

CONFIGS = Path(__file__).parents[1] / "configs" / "dualforce"
ALIGNED = {"bridge": {"frame_aligned": True}}


def _with_struct(inputs: DualForceInputs, struct: torch.Tensor) -> DualForceInputs:
    return DualForceInputs(**{**inputs.__dict__, "struct": struct})


def _randomise_aligned(model: DualForceModel) -> None:
    """Give the zero-initialised projections weights, as training would."""
    for name, param in model.named_parameters():
        if "struct_to_video_frames.proj" in name:
            torch.nn.init.normal_(param, std=0.5)


def test_rows_pair_every_video_frame_with_its_own_structure_frames_in_order():
    video_pos = torch.tensor([0, 1, 2, 3])
    owner = torch.tensor([0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])  # sink token, then 4 per latent frame
    rows = aligned_struct_rows(video_pos, owner, 4)
    assert rows[0].tolist() == [-1, -1, -1, -1]  # the sink frame gets no update
    assert rows[1:].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    # a frame whose structure is missing from the call is left alone rather than misaligned
    assert aligned_struct_rows(torch.tensor([5]), owner, 4).tolist() == [[-1, -1, -1, -1]]


def test_the_update_reads_its_own_frames_in_time_order_and_nothing_else():
    torch.manual_seed(0)
    path = FrameAlignedStructure(video_dim=8, struct_dim=6, per_latent=2)
    torch.nn.init.normal_(path.proj.weight)
    video = torch.zeros(1, 3 * 4, 8)  # 3 frames x 4 tokens
    struct = torch.randn(1, 5, 6)  # sink + 2 per latent frame
    rows = aligned_struct_rows(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1, 2, 2]), 2)
    out = path(video, struct, rows)
    assert torch.equal(out[:, :4], video[:, :4])  # sink frame untouched
    assert torch.allclose(out[:, 4], out[:, 7])  # one update per frame, on each of its tokens
    swapped = struct[:, [0, 2, 1, 3, 4]]  # frame 1's two structure frames in the other order
    out_swapped = path(video, swapped, rows)
    assert not torch.allclose(out_swapped[:, 4:8], out[:, 4:8])  # order matters
    assert torch.allclose(out_swapped[:, 8:], out[:, 8:])  # frame 2 reads only its own frames


def test_zero_initialised_path_starts_from_the_plain_bridge():
    torch.manual_seed(0)
    plain = DualForceModel(toy_config())
    aligned = DualForceModel(toy_config().replace(ALIGNED))
    missing, unexpected = aligned.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all("struct_to_video_frames" in k for k in missing)
    inputs = random_inputs(plain, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(plain(inputs)[0], aligned(inputs)[0], atol=1e-6)


def test_a_frames_video_follows_its_own_structure_frames():
    torch.manual_seed(0)
    model = DualForceModel(toy_config().replace(ALIGNED)).eval()
    _randomise_aligned(model)
    inputs = random_inputs(model, 3, generator=torch.Generator().manual_seed(0))
    struct = inputs.struct.clone()
    owner = inputs.layout.struct_latent_index(model.rates.struct_per_latent)
    last = int(inputs.layout.video_pos[-1])
    struct[:, owner == last] += 2.0  # move only the last latent frame's structure
    with torch.no_grad():
        before, _ = model(inputs)
        after, _ = model(_with_struct(inputs, struct))
    change = (after - before).abs().mean(dim=(0, 1, 3, 4))  # per latent frame
    assert change[-1] > 1e-3
    assert torch.allclose(change[:-1], torch.zeros_like(change[:-1]))  # block-causal: the past is unmoved


def test_cached_streaming_equals_full_forward_with_the_aligned_path():
    torch.manual_seed(0)
    model = DualForceModel(toy_config().replace(ALIGNED))
    _randomise_aligned(model)
    report = check_cache_consistency(model, num_chunks=5)
    assert report.ok, report


@pytest.mark.parametrize("config", ["toy_packaged_aligned.yaml"])
def test_aligned_config_builds_and_round_trips(config: str, tmp_path: Path):
    model_config, rest = load_config(CONFIGS / config)
    assert model_config.bridge.frame_aligned
    model = DualForceModel(model_config)
    _randomise_aligned(model)
    loaded = DualForceModel.from_pretrained(model.save_pretrained(tmp_path / "ckpt"))
    assert loaded.config.bridge.frame_aligned
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
