"""Training on the model's own rollouts (training/self_rollout.py): the context is the sampler's stream."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowstudio.avatar.inference.streaming import stream_latents
from flowstudio.avatar.model.config import toy_config
from flowstudio.avatar.model.diffusion_forcing import noise_batch
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.avatar.model.rates import BlockLayout, TokenRates
from flowstudio.avatar.training.self_rollout import rollout_batch
from flowstudio.avatar.training.train import SyntheticTalkingDataset, TrainConfig, train
from flowstudio.errors import InputError
from tests.avatar_fixtures import tiny_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHUNKS = 3


def _setup(context_sigma: float = 0.0):
    cfg = toy_config().replace({"forcing": {"context_sigma": context_sigma, "inference_steps": 2}})
    torch.manual_seed(0)
    model = DualForceModel(cfg).eval()
    batch = SyntheticTalkingDataset(cfg, num_chunks=CHUNKS, size=2).batch([0, 1])
    return cfg, model, batch


def test_context_is_the_samplers_own_stream_and_only_the_target_chunk_is_a_target():
    cfg, model, batch = _setup()
    cut, rolled, layout = rollout_batch(model, batch, cfg, CHUNKS, torch.Generator().manual_seed(7))

    # the same draws in the documented order: target chunk, diffusion-forcing noise, then the stream
    g = torch.Generator().manual_seed(7)
    target = int(torch.randint(1, CHUNKS, (1,), generator=g))
    rates = TokenRates.from_config(cfg.rates)
    end, start = rates.span(target), rates.span(target)
    frames, structs = 1 + start.latent[0], 1 + start.struct[0]
    assert cut["video"].shape[2] == 1 + end.latent[1] and cut["audio"].shape[1] == 1 + end.audio[1]
    assert torch.equal(layout.video_ids, BlockLayout.build(rates, 0, target + 1, sink=True).video_ids)
    plain = noise_batch(cut["video"], cut["struct"], layout, cfg.forcing, generator=g)
    for row in range(2):
        audio = batch["audio"][row, 1 : 1 + rates.span(target - 1).audio[1]]
        made = list(stream_latents(model, batch["video"][row : row + 1, :, :1], audio, generator=g))
        streamed = torch.cat([c.video for c in made], dim=2)[0]
        assert torch.equal(rolled.video[row, :, 1:frames], streamed)  # committed clean (context_sigma 0)
        assert torch.equal(rolled.struct[row, 1:structs], torch.cat([c.struct for c in made], dim=1)[0])

    # the target chunk is diffusion forcing's, untouched; the sink and the context carry no loss
    assert torch.equal(rolled.video[:, :, frames:], plain.video[:, :, frames:])
    assert torch.equal(rolled.video_sigma[:, frames:], plain.video_sigma[:, frames:])
    assert torch.equal(rolled.video_target, plain.video_target)
    assert rolled.video_weight[:, :frames].sum() == 0 and bool((rolled.video_weight[:, frames:] == 1).all())
    assert rolled.struct_weight.sum() == 0  # the rolled-out head motion is not the truth's
    assert bool((rolled.video_sigma[:, 1:frames] == 0).all())
    assert torch.equal(rolled.video[:, :, :1], batch["video"][:, :, :1])  # the sink stays clean


def test_context_is_committed_at_the_checkpoints_context_level():
    cfg, model, batch = _setup(context_sigma=0.5)
    _, rolled, _ = rollout_batch(model, batch, cfg, CHUNKS, torch.Generator().manual_seed(3))
    frames = int((rolled.video_weight[0] == 0).sum())  # the sink and the context
    structs = 1 + (frames - 1) * TokenRates.from_config(cfg.rates).struct_per_latent
    assert frames > 1
    assert bool((rolled.video_sigma[:, 1:frames] == 0.5).all())
    struct_level = 0.5 * cfg.forcing.struct_range[1]
    assert torch.allclose(rolled.struct_sigma[:, 1:structs], torch.tensor(struct_level))


def _run(out: Path, steps: int) -> TrainConfig:
    return tiny_run(out, steps, num_chunks=CHUNKS, lr=1e-3, save_every=2, rollout_prob=0.5, rollout_steps=1)


def test_training_with_rollouts_trains_and_resumes_exactly(tmp_path: Path):
    cfg = toy_config()
    full = train(cfg, _run(tmp_path / "a", 4), resume=False)
    assert all(torch.isfinite(torch.tensor(r["total"])) for r in full)
    # with probability 0.5 some steps are rollouts (no structure loss) and some are not
    assert {r["struct"] == 0.0 for r in full} == {True, False}, [r["struct"] for r in full]
    train(cfg, _run(tmp_path / "b", 2), resume=False)
    rest = train(cfg, _run(tmp_path / "b", 4), resume=True)
    assert [r["step"] for r in rest] == [3.0, 4.0]
    for ours, reference in zip(rest, full[2:], strict=True):
        assert ours["total"] == pytest.approx(reference["total"], rel=1e-5)


@pytest.mark.parametrize(
    "fields", [{"rollout_prob": 1.5}, {"rollout_prob": True}, {"rollout_prob": 0.5, "num_chunks": 1}]
)
def test_bad_rollout_settings_are_refused(fields: dict):
    with pytest.raises(InputError, match="rollout_prob"):
        TrainConfig.from_dict(fields)
