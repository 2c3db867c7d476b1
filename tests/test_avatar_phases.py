"""DualForce training phases: phase 2 (causal video) hands its weights to phase 4 (multimodal).

The real phase configs are read from configs/dualforce/ and run tiny (synthetic clips, one chunk, a
few steps): the hand-off carries every phase-2 tensor, keeps the new parts' fresh initialisation with
the bridge's outputs into video at zero, so phase 4's first forward predicts phase 2's video exactly.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file

from flowstudio.avatar.model.config import load_config
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.avatar.training.handoff import init_from_phase
from flowstudio.avatar.training.memory import fsdp_memory
from flowstudio.avatar.training.train import SyntheticTalkingDataset, TrainConfig, train, training_step
from flowstudio.errors import CheckpointError

CONFIGS = Path(__file__).parents[1] / "configs" / "dualforce"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _phase(name: str, out: Path, steps: int, **overrides):
    """The model config of a real phase YAML and its train section made tiny (synthetic, 1 chunk)."""
    model_config, rest = load_config(CONFIGS / name)
    train_config = replace(
        TrainConfig.from_dict(rest["train"]),
        output_dir=str(out),
        steps=steps,
        batch_size=2,
        num_chunks=1,
        dataset="synthetic",
        dataset_size=2,
        save_every=1,
        log_every=100,
        **overrides,
    )
    return model_config, train_config


@pytest.fixture(scope="module")
def phase2(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phase2")
    model_config, train_config = _phase("phase2_video.yaml", out, steps=3, lr=3e-3)
    train(model_config, train_config, resume=False)
    return out / "final"


def test_phase_configs_describe_the_phases():
    video_only, rest2 = load_config(CONFIGS / "phase2_video.yaml")
    full, rest4 = load_config(CONFIGS / "phase4_multimodal.yaml")
    assert video_only.struct.num_layers == 0 and video_only.bridge_layers == ()
    assert video_only.loss.struct == video_only.loss.flame == 0.0 and video_only.audio.paths == "video"
    assert full.struct.num_layers > 0 and full.bridge_layers and full.audio.paths == "dual"
    assert video_only.video == full.video  # the tower phase 4 inherits
    assert (
        TrainConfig.from_dict(rest4["train"]).init_from
        == TrainConfig.from_dict(rest2["train"]).output_dir + "/final"
    )
    for name in ("mova_lite_phase2.yaml", "mova_lite_phase4.yaml"):
        cfg, rest = load_config(CONFIGS / name)
        assert cfg.video.num_layers == 28 and TrainConfig.from_dict(rest["train"]).mixed_precision == "bf16"


def test_hand_off_carries_phase2_and_initialises_the_new_parts(phase2: Path, tmp_path: Path):
    model_config, train_config = _phase("phase4_multimodal.yaml", tmp_path, steps=1)
    old = load_file(str(phase2 / "model.safetensors"))
    set_seed(train_config.seed)
    fresh = DualForceModel(model_config)
    set_seed(train_config.seed)
    model = DualForceModel(model_config)
    hand_off = init_from_phase(model, phase2)

    state, fresh_state = model.state_dict(), fresh.state_dict()
    assert set(hand_off.carried) == set(old) and set(hand_off.new) == set(state) - set(old)
    assert any(n.startswith("struct.blocks.") for n in hand_off.new) and any(
        n.startswith("bridge.") for n in hand_off.new
    )
    for name in old:
        assert torch.equal(state[name], old[name]), name
    assert hand_off.zeroed and all(".struct_to_video.o." in n for n in hand_off.zeroed)
    for name in hand_off.new:
        expected = torch.zeros_like(fresh_state[name]) if name in hand_off.zeroed else fresh_state[name]
        assert torch.equal(state[name], expected), name
    # the phase-2 weights were trained: carrying them over is not the same as a fresh start
    assert not torch.equal(
        old["video.blocks.0.ffn.net.0.proj.weight"], fresh_state["video.blocks.0.ffn.net.0.proj.weight"]
    )

    # step 0 of phase 4 predicts phase 2's video exactly (same data, same noise)
    dataset = SyntheticTalkingDataset(model_config, num_chunks=1, size=2)
    batch = dataset.batch([0, 1])
    before = DualForceModel.from_pretrained(phase2)
    with torch.no_grad():
        ours = training_step(model.eval(), batch, dataset.layout, torch.Generator().manual_seed(7))
        theirs = training_step(before, batch, dataset.layout, torch.Generator().manual_seed(7))
    assert torch.equal(ours.video, theirs.video)


def test_phase4_run_starts_from_phase2_and_resumes_without_it(phase2: Path, tmp_path: Path):
    source = tmp_path / "phase2-final"
    shutil.copytree(phase2, source)
    # lr 0: the weights after the run are the weights it started from
    model_config, train_config = _phase(
        "phase4_multimodal.yaml", tmp_path / "run", steps=2, lr=0.0, init_from=str(source)
    )
    records = train(model_config, train_config)
    assert len(records) == 2 and all(torch.isfinite(torch.tensor(r["total"])) for r in records)
    old = load_file(str(source / "model.safetensors"))
    final = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    assert all(torch.equal(final[n], old[n]) for n in old)
    assert all(not final[n].any() for n in final if ".struct_to_video.o." in n)

    shutil.rmtree(source)  # a resumed run continues from its own checkpoint, not from init_from
    more = train(model_config, replace(train_config, steps=3))
    assert [r["step"] for r in more] == [3.0]


def test_hand_off_refuses_what_does_not_fit(phase2: Path, tmp_path: Path):
    model_config, _ = _phase("phase4_multimodal.yaml", tmp_path, steps=1)
    with pytest.raises(CheckpointError, match="has no config.json"):
        init_from_phase(DualForceModel(model_config), tmp_path / "missing")
    wider = model_config.replace({"video": {"ffn_dim": model_config.video.ffn_dim * 2}})
    with pytest.raises(CheckpointError, match="of another shape"):
        init_from_phase(DualForceModel(wider), phase2)
    broken = tmp_path / "broken"
    shutil.copytree(phase2, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="could not be read"):
        init_from_phase(DualForceModel(model_config), broken)


def test_fsdp_memory_estimate_counts_the_model_exactly():
    model_config, rest = load_config(CONFIGS / "phase4_multimodal.yaml")
    estimate = fsdp_memory(model_config, num_chunks=2, gpus=8)
    assert estimate.parameters == sum(p.numel() for p in DualForceModel(model_config).parameters())
    # 16 bytes of optimiser state per parameter, split over the GPUs
    assert estimate.sharded_state_gib == pytest.approx(estimate.parameters * 16 / 8 / 1024**3)
    assert fsdp_memory(model_config, num_chunks=2, gpus=4).sharded_state_gib == pytest.approx(
        2 * estimate.sharded_state_gib
    )
    assert fsdp_memory(model_config, num_chunks=4, gpus=8).activations_gib > estimate.activations_gib
