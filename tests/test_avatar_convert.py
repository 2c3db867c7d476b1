"""MOVA conversion round trip on a synthetic checkpoint; verify's meta-device parameter counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from flowstudio.avatar.evaluation.verify import count_parameters, memory_estimate
from flowstudio.avatar.model.config import AudioConfig, mova_360p_config, mova_lite_config
from flowstudio.avatar.model.convert import (
    convert_mova,
    map_state_dict,
    mova_state_shapes,
    read_module,
    unmap_state_dict,
)
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.errors import CheckpointError

# MOVA-360p-shaped config.json files, shrunk: the keys and layout are MOVA's, the sizes tiny.
VIDEO = {
    "dim": 32,
    "in_dim": 36,
    "ffn_dim": 48,
    "out_dim": 16,
    "text_dim": 24,
    "freq_dim": 16,
    "eps": 1e-6,
    "patch_size": [1, 2, 2],
    "num_heads": 2,
    "num_layers": 3,
    "has_image_input": False,
}
AUDIO = {
    "dim": 16,
    "in_dim": 128,
    "ffn_dim": 40,
    "out_dim": 128,
    "text_dim": 24,
    "freq_dim": 16,
    "eps": 1e-6,
    "patch_size": [1],
    "num_heads": 1,
    "num_layers": 2,
    "has_image_input": False,
    "vae_type": "dac",
}
BRIDGE = {
    "visual_layers": 3,
    "audio_layers": 2,
    "visual_hidden_dim": 32,
    "audio_hidden_dim": 16,
    "audio_fps": 50.0,
    "head_dim": 16,
    "interaction_strategy": "full",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _synthetic_mova(root: Path) -> dict[str, dict[str, torch.Tensor]]:
    shapes = mova_state_shapes(VIDEO, AUDIO, BRIDGE)
    g = torch.Generator().manual_seed(0)
    states = {}
    for folder, cfg in (("video_dit", VIDEO), ("audio_dit", AUDIO), ("dual_tower_bridge", BRIDGE)):
        (root / folder).mkdir(parents=True)
        (root / folder / "config.json").write_text(json.dumps(cfg))
        states[folder] = {k: torch.randn(s, generator=g) for k, s in shapes[folder].items()}
        save_file(states[folder], str(root / folder / "diffusion_pytorch_model.safetensors"))
    return states


def test_mova_round_trip(tmp_path: Path):
    original = _synthetic_mova(tmp_path / "mova")
    report = convert_mova(
        tmp_path / "mova",
        tmp_path / "out",
        num_keypoints=5,
        audio=AudioConfig(feature="logmel", feature_dim=40, hidden_dim=16),
        image_size=(64, 64),
        dtype=torch.float32,
    )
    # the config comes from the checkpoint's config.json files, not from code defaults
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (cfg["video"]["dim"], cfg["video"]["num_layers"], cfg["video"]["ffn_dim"]) == (32, 3, 48)
    assert (cfg["struct"]["dim"], cfg["struct"]["num_layers"], cfg["bridge"]["strategy"]) == (16, 2, "full")
    assert cfg["video_input"] == {
        "latent_channels": 16,
        "mask_channels": 4,
        "concat_reference": True,
        "reference_every_frame": False,
        "residual_to_reference": False,  # MOVA denoises the latents themselves
    }
    model = DualForceModel.from_pretrained(tmp_path / "out")
    state = model.state_dict()
    back = unmap_state_dict(state, report)
    for folder, tensors in original.items():
        for key, value in tensors.items():
            if f"{folder}/{key}" in report.mapped:
                assert torch.equal(back[folder][key], value), f"{folder}/{key} changed in the round trip"
    # every MOVA tensor is either mapped or reported as dropped, nothing silently lost
    total = sum(len(t) for t in original.values())
    assert len(report.mapped) + len(report.dropped) == total
    assert all(
        ("text_embedding" in k or "audio_dit/patch_embedding" in k or "audio_dit/head.head" in k)
        for k in report.dropped
    )
    assert (
        "struct.embedding.weight" in report.reinitialised
        and "video.patch_embedding.weight" not in report.reinitialised
    )
    # spot checks of the name mapping (diffusers' norm order: MOVA norm3 is the cross-attention norm)
    assert report.mapped["video_dit/blocks.1.norm3.weight"] == "video.blocks.1.norm2.weight"
    assert report.mapped["video_dit/blocks.0.ffn.0.weight"] == "video.blocks.0.ffn.net.0.proj.weight"
    assert (
        report.mapped["dual_tower_bridge/audio_to_video_conditioners.1.inner.k.weight"]
        == "bridge.layers.1.struct_to_video.k.weight"
    )


def test_converted_model_runs(tmp_path: Path):
    _synthetic_mova(tmp_path / "mova")
    convert_mova(
        tmp_path / "mova",
        tmp_path / "out",
        num_keypoints=5,
        audio=AudioConfig(feature="logmel", feature_dim=40, hidden_dim=16),
        image_size=(32, 32),
        dtype=torch.float32,
    )
    from flowstudio.avatar.evaluation.verify import check_shapes

    shapes = check_shapes(DualForceModel.from_pretrained(tmp_path / "out"), num_chunks=1)
    assert shapes["video_out"] == [1, 16, 4, 4, 4]  # sink + 3 latent frames (MOVA chunks of 3), 32 px / 8


def test_map_is_pure_renaming():
    shapes = mova_state_shapes(VIDEO, AUDIO, BRIDGE)
    video = {k: torch.zeros(s) for k, s in shapes["video_dit"].items()}
    mapped, report = map_state_dict(video, {}, {})
    assert all(mapped[new] is video[old.split("/", 1)[1]] for old, new in report.mapped.items())


def test_missing_module_folder_is_a_clear_error(tmp_path: Path):
    (tmp_path / "video_dit").mkdir()
    with pytest.raises(CheckpointError, match="missing config.json"):
        read_module(tmp_path / "video_dit")


def test_parameter_counts_on_meta_device():
    lite = count_parameters(mova_lite_config())
    assert abs(lite["total"] - 2e9) / 2e9 < 0.10, lite  # MOVA-Lite ~2B within 10%
    assert lite["total"] == sum(v for k, v in lite.items() if k != "total")
    big = count_parameters(mova_360p_config())
    assert 13e9 < big["video_tower"] < 16e9  # MOVA's 5120 x 40 video DiT is ~14B
    mem = memory_estimate(mova_lite_config())
    assert mem["weights_gib"] == pytest.approx(lite["total"] * 2 / 1024**3)
    assert mem["tokens_per_latent_frame"] == 880  # 352x640 / 8 / (2x2)


def test_config_keys_must_come_from_the_checkpoint():
    from flowstudio.avatar.model.config import StructureLayout
    from flowstudio.avatar.model.convert import config_from_mova

    partial = {k: v for k, v in VIDEO.items() if k != "ffn_dim"}
    with pytest.raises(CheckpointError, match="'ffn_dim'"):
        config_from_mova(
            partial, AUDIO, BRIDGE, structure=StructureLayout(5), audio=AudioConfig(), image_size=(64, 64)
        )
