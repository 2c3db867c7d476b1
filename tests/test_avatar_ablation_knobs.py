"""The switches behind the seven DualForce ablations, the TalkingShapes training data and run-YAML bases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flowstudio.avatar.evaluation.verify import check_cache_consistency, random_inputs
from flowstudio.avatar.model.attention import block_causal_mask
from flowstudio.avatar.model.config import ForcingConfig, StructureLayout, load_config, toy_config
from flowstudio.avatar.model.diffusion_forcing import noise_batch
from flowstudio.avatar.model.dualforce import DualForceInputs, DualForceModel
from flowstudio.avatar.model.kv_cache import KVCache
from flowstudio.avatar.model.rates import BlockLayout, TokenRates
from flowstudio.errors import InputError

CONFIGS = Path(__file__).parents[1] / "configs" / "dualforce"
ABLATIONS = sorted((CONFIGS / "ablations").glob("*.yaml"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_seven_ablation_configs_each_change_one_thing_of_the_base():
    base, base_rest = load_config(CONFIGS / "toy_packaged.yaml")  # the packaged model's recipe
    assert len(ABLATIONS) == 7
    changed = {}
    for path in ABLATIONS:
        cfg, rest = load_config(path)
        assert rest["train"]["dataset"] == base_rest["train"]["dataset"]  # inherited from the base
        assert rest["train"]["output_dir"].endswith(path.stem)
        # the whole training recipe is the base's (budget, mouth weight, audio dropout)
        assert {k: v for k, v in rest["train"].items() if k != "output_dir"} == {
            k: v for k, v in base_rest["train"].items() if k != "output_dir"
        }
        diff = {k for k, v in cfg.to_dict().items() if v != base.to_dict()[k]}
        changed[path.stem] = diff
    assert changed["no_bridge"] == {"bridge"} and changed["full_bridge"] == {"bridge"}
    assert changed["symmetric_noise"] == changed["no_diffusion_forcing"] == {"forcing"}
    assert changed["no_reference_sink"] == {"forcing", "video_input", "video"}
    assert changed["single_path_audio"] == {"audio"}
    assert changed["no_struct_tower"] == {"struct", "bridge", "loss"}


def test_base_chain_that_loops_is_refused(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(InputError, match="loops"):
        load_config(tmp_path / "a.yaml")


def test_without_kept_sink_the_reference_leaves_the_window():
    ids = torch.tensor([0, 1, 2, 3])
    kept = block_causal_mask(ids, ids, window=1)
    dropped = block_causal_mask(ids, ids, window=1, keep_sink=False)
    assert kept[3, 0] and not dropped[3, 0]  # block 3 no longer sees the reference
    assert dropped[1, 0] and torch.equal(kept[:, 1:], dropped[:, 1:])
    cache = KVCache(num_layers=1, window=1, keep_sink=False)
    for block in range(4):
        cache.stage(0, torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))
        cache.commit(torch.tensor([block, block]))
    assert 0 not in cache.block_ids.tolist() and cache.block_ids.unique().tolist() == [3]


@pytest.mark.parametrize(
    "overrides",
    [
        {"forcing": {"reference_sink": False, "window_chunks": 1}},
        {"struct": {"num_layers": 0}, "bridge": {"strategy": "none"}},
        {"audio": {"paths": "video"}},
    ],
    ids=["no_sink", "no_struct_tower", "single_path"],
)
def test_cached_streaming_equals_full_forward_for_ablations(overrides):
    torch.manual_seed(0)
    model = DualForceModel(toy_config().replace(overrides))
    report = check_cache_consistency(model, num_chunks=4)
    assert report.ok, report


def test_single_path_audio_leaves_the_structure_tower_deaf():
    torch.manual_seed(0)
    model = DualForceModel(
        toy_config().replace({"audio": {"paths": "video"}, "bridge": {"strategy": "none"}})
    )
    inputs = random_inputs(model, 2, generator=torch.Generator().manual_seed(0))
    louder = DualForceInputs(**{**inputs.__dict__, "audio": inputs.audio * 3 + 1})
    with torch.no_grad():
        v1, s1 = model(inputs)
        v2, s2 = model(louder)
    assert torch.equal(s1, s2) and not torch.allclose(v1, v2)


def test_shared_noise_level_without_diffusion_forcing():
    cfg = toy_config()
    layout = BlockLayout.build(TokenRates.from_config(cfg.rates), 0, 3, sink=True)
    video, struct = torch.randn(4, 12, 4, 8, 8), torch.randn(4, 13, 22)
    config = ForcingConfig(video_range=(0.0, 1.0), struct_range=(0.0, 0.5), per_frame_noise=False)
    out = noise_batch(video, struct, layout, config, generator=torch.Generator().manual_seed(0))
    generated = out.video_sigma[:, 1:]
    assert torch.equal(generated, generated[:, :1].expand_as(generated))  # one level per clip
    assert torch.allclose(out.struct_sigma[:, 1:], 0.5 * generated[:, :1].expand(-1, 12))
    assert torch.all(out.video_sigma[:, 0] == 0)  # the sink stays clean
    per_frame = noise_batch(
        video, struct, layout, ForcingConfig(), generator=torch.Generator().manual_seed(0)
    )
    assert per_frame.video_sigma[:, 1:].std(1).min() > 0


def test_structure_normalisation_round_trips_and_is_validated():
    layout = StructureLayout(num_keypoints=1, mean=tuple(range(10)), std=(2.0,) * 10)
    raw = torch.randn(5, 10)
    assert torch.allclose(layout.denormalize(layout.normalize(raw)), raw, atol=1e-6)
    with pytest.raises(InputError, match="10 channels"):
        StructureLayout(num_keypoints=1, mean=(0.0,) * 3)
    with pytest.raises(InputError, match="positive"):
        StructureLayout(num_keypoints=1, std=(0.0,) * 10)


def test_talkingshapes_items_are_deterministic_and_shaped_like_the_layout():
    from flowstudio.avatar.training.toy_data import TalkingShapesDataset, structure_statistics

    cfg = toy_config()
    mean, std = structure_statistics(cfg, 2, clips=3)
    cfg = cfg.replace({"structure": {"mean": list(mean), "std": list(std)}})
    data = TalkingShapesDataset(cfg, num_chunks=2, size=3, seed=7)
    item = data[1]
    lay = data.layout
    assert item["video"].shape == (12, len(lay.video_ids), 8, 8)
    assert item["struct"].shape == (len(lay.struct_ids), 22)
    assert item["audio"].shape == (len(lay.audio_ids), 40)
    again = TalkingShapesDataset(cfg, num_chunks=2, size=3, seed=7)[1]
    assert all(torch.equal(item[k], again[k]) for k in item)
    other = TalkingShapesDataset(cfg, num_chunks=2, size=3, seed=8)[1]
    assert not torch.equal(item["video"], other["video"])
    # normalised rows come back to the world's units
    assert torch.allclose(cfg.structure.denormalize(item["struct"][1:]), data.raw_structure(1), atol=1e-5)
    # sink frame = the first frame as a reference image; first generated latent starts at frame 0
    assert torch.allclose(item["video"][:, 0], data.codec.encode_image(data.clip(1).frames[0])[0, :, 0])


def test_training_on_talkingshapes_saves_the_structure_statistics(tmp_path: Path):
    from flowstudio.avatar.training.train import TrainConfig, train

    cfg = toy_config()
    run = TrainConfig(
        output_dir=str(tmp_path),
        steps=2,
        batch_size=1,
        num_chunks=1,
        save_every=2,
        dataset="talkingshapes",
        dataset_size=2,
    )
    records = train(cfg, run)
    assert len(records) == 2 and all(r["total"] == r["total"] for r in records)
    saved = DualForceModel.from_pretrained(tmp_path / "final").config
    assert saved.structure.mean is not None and len(saved.structure.std) == 22
    with pytest.raises(InputError, match="train.dataset"):
        TrainConfig.from_dict({"dataset": "imagenet"})


def test_toy_codec_stride_follows_the_run_config():
    from flowstudio.avatar.model.codec import ToyCodec

    cfg, _ = load_config(CONFIGS / "toy.yaml")
    codec = ToyCodec.for_config(cfg)
    frames = (np.arange(8 * 64 * 64 * 3) % 251).astype(np.uint8).reshape(8, 64, 64, 3)
    latent = codec.encode_frames(frames)
    assert latent.shape == (1, 12, 2, *cfg.latent_size) and cfg.latent_size == (16, 16)
    assert codec.decode(latent).shape == frames.shape
    flat = np.full((4, 64, 64, 3), 77, np.uint8)  # a flat clip survives the round trip exactly
    assert np.array_equal(codec.decode(codec.encode_frames(flat)), flat)
    with pytest.raises(InputError, match="stride"):
        ToyCodec(stride=3)


def test_reference_on_every_frame_reaches_every_patch_and_streams_exactly():
    cfg = toy_config().replace({"video_input": {"reference_every_frame": True}, "video": {"in_channels": 24}})
    torch.manual_seed(0)
    model = DualForceModel(cfg)
    assert check_cache_consistency(model, num_chunks=3).ok
    inputs = random_inputs(model, 2, generator=torch.Generator().manual_seed(0))
    other = DualForceInputs(**{**inputs.__dict__, "reference": inputs.reference + 1})
    with torch.no_grad():
        v1, _ = model(inputs)
        v2, _ = model(other)
    generated = inputs.layout.video_ids > 0
    assert not torch.allclose(v1[:, :, generated], v2[:, :, generated])  # every frame sees the reference


def test_train_shift_moves_training_levels_up_within_the_range():
    cfg = toy_config()
    layout = BlockLayout.build(TokenRates.from_config(cfg.rates), 0, 3, sink=True)
    video, struct = torch.randn(64, 12, 4, 8, 8), torch.randn(64, 13, 22)
    plain = noise_batch(video, struct, layout, ForcingConfig(), generator=torch.Generator().manual_seed(0))
    shifted = noise_batch(
        video, struct, layout, ForcingConfig(train_shift=3.0), generator=torch.Generator().manual_seed(0)
    )
    assert shifted.video_sigma[:, 1:].mean() > plain.video_sigma[:, 1:].mean() + 0.15
    assert shifted.struct_sigma.max() <= 0.7 and torch.all(shifted.video_sigma[:, 0] == 0)
