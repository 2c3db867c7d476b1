"""``video_input.residual_to_reference``: the video tower denoises differences from the reference latent."""

from __future__ import annotations

import pytest
import torch

from flowstudio.avatar.inference.streaming import stream_latents
from flowstudio.avatar.model.config import toy_config
from flowstudio.avatar.model.diffusion_forcing import noise_batch
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.avatar.model.rates import BlockLayout, TokenRates
from flowstudio.avatar.model.residual import from_model_space, to_model_space
from flowstudio.avatar.training.self_rollout import rollout_batch
from flowstudio.avatar.training.train import SyntheticTalkingDataset, training_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RESIDUAL = {"video_input": {"residual_to_reference": True}}


def test_model_space_is_the_difference_from_the_sink_frame_and_back():
    cfg = toy_config().replace(RESIDUAL)
    video = torch.randn(2, 12, 4, 3, 3)
    inside = to_model_space(video, cfg)
    assert torch.equal(inside[:, :, 0], video[:, :, 0])  # the reference stays the reference
    assert torch.allclose(inside[:, :, 1:], video[:, :, 1:] - video[:, :, :1])
    assert torch.allclose(from_model_space(inside, cfg), video, atol=1e-6)
    assert to_model_space(video, toy_config()) is video  # off: untouched


def test_a_still_head_is_zero_for_the_tower_to_generate():
    cfg = toy_config().replace(RESIDUAL)
    layout_rates = TokenRates.from_config(cfg.rates)
    layout = BlockLayout.build(layout_rates, 0, 2, sink=True)
    h, w = cfg.latent_size
    still = torch.randn(1, 12, 1, h, w).expand(3, -1, len(layout.video_ids), -1, -1)
    struct = torch.zeros(3, len(layout.struct_ids), cfg.struct.in_channels)
    g = torch.Generator().manual_seed(0)
    noised = noise_batch(to_model_space(still, cfg), struct, layout, cfg.forcing, generator=g)
    g = torch.Generator().manual_seed(0)
    noise = noise_batch(torch.zeros_like(still), struct, layout, cfg.forcing, generator=g)
    # the generated frames' clean target is zero: velocity = noise - 0
    assert torch.allclose(noised.video_target[:, :, 1:], noise.video_target[:, :, 1:])


def test_the_sampler_yields_codec_latents():
    torch.manual_seed(0)
    plain = DualForceModel(toy_config()).eval()
    residual = DualForceModel(toy_config().replace(RESIDUAL)).eval()
    residual.load_state_dict(plain.state_dict())  # same weights: the tower computes the same thing
    g = torch.Generator().manual_seed(1)
    h, w = plain.config.latent_size
    reference = torch.randn(1, 12, 1, h, w, generator=g)
    audio = torch.randn(3 * plain.rates.audio_per_latent, plain.config.audio.feature_dim, generator=g)
    made_plain = list(stream_latents(plain, reference, audio, generator=torch.Generator().manual_seed(5)))
    made_res = list(stream_latents(residual, reference, audio, generator=torch.Generator().manual_seed(5)))
    for a, b in zip(made_plain, made_res, strict=True):
        assert torch.allclose(b.video, a.video + reference, atol=1e-6)  # the tower's output + the reference
        assert torch.equal(a.struct, b.struct)


def test_training_and_rollouts_work_in_the_towers_space():
    cfg = toy_config().replace({**RESIDUAL, "forcing": {"inference_steps": 2}})
    torch.manual_seed(0)
    model = DualForceModel(cfg).eval()
    batch = SyntheticTalkingDataset(cfg, num_chunks=3, size=2).batch([0, 1])
    rates = TokenRates.from_config(cfg.rates)
    layout = BlockLayout.build(rates, 0, 3, sink=True)
    loss = training_step(model, batch, layout, torch.Generator().manual_seed(0), cfg)
    assert torch.isfinite(loss.total)
    cut, rolled, _ = rollout_batch(model, batch, cfg, 3, torch.Generator().manual_seed(7))
    # replay the draws: target chunk, noise, then the rollout stream (codec latents) as context
    g = torch.Generator().manual_seed(7)
    target = int(torch.randint(1, 3, (1,), generator=g))
    frames = 1 + rates.span(target).latent[0]
    noise_batch(
        to_model_space(cut["video"], cfg),
        cut["struct"],
        BlockLayout.build(rates, 0, target + 1, sink=True),
        cfg.forcing,
        generator=g,
    )
    audio = batch["audio"][0, 1 : 1 + rates.span(target - 1).audio[1]]
    reference = batch["video"][:1, :, :1]
    made = torch.cat([c.video for c in stream_latents(model, reference, audio, generator=g)], dim=2)
    assert torch.allclose(
        rolled.video[:1, :, 1:frames], made - reference, atol=1e-6
    )  # context as differences
