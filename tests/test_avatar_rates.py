"""Token-rate alignment, multimodal diffusion forcing and loss properties."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from flowstudio.avatar.model.config import ForcingConfig, LossConfig, RatesConfig, StructureLayout, toy_config
from flowstudio.avatar.model.diffusion_forcing import chunk_schedule, noise_batch
from flowstudio.avatar.model.rates import BlockLayout, TokenRates
from flowstudio.avatar.training.losses import flame_loss, lip_sync_loss, struct_loss, total_loss, video_loss
from flowstudio.errors import InputError


def test_rates_per_latent_frame():
    rates = TokenRates.from_config(RatesConfig(frames_per_chunk=3))
    assert rates.latent_rate == Fraction(25, 4)  # 25 fps / 4 = 6.25 Hz
    assert (rates.frames_per_latent, rates.struct_per_latent, rates.audio_per_latent) == (4, 4, 8)


def test_each_chunk_sees_exactly_its_own_time_span():
    rates = TokenRates.from_config(RatesConfig(frames_per_chunk=3))
    for c in range(5):
        span = rates.span(c)
        t0, t1 = span.seconds
        assert t1 - t0 == Fraction(12, 25)  # 3 latent frames x 0.16 s
        # every stream's index range maps to the same seconds: index / rate
        assert Fraction(span.video_frames[0], 25) == t0 and Fraction(span.video_frames[1], 25) == t1
        assert Fraction(span.struct[0], 25) == t0 and Fraction(span.struct[1], 25) == t1
        assert Fraction(span.audio[0], 50) == t0 and Fraction(span.audio[1], 50) == t1
        if c:
            assert rates.span(c - 1).audio[1] == span.audio[0]  # contiguous, no overlap
    layout = BlockLayout.build(rates, 0, 2, sink=True)
    assert layout.video_ids.tolist() == [0, 1, 1, 1, 2, 2, 2]
    assert (layout.struct_ids == 1).sum() == 12 and (layout.audio_ids == 2).sum() == 24
    owner = layout.struct_latent_index(
        4
    )  # structure frame s belongs to latent frame s // 4 (+1 for the sink)
    assert owner[:6].tolist() == [0, 1, 1, 1, 1, 2]


def test_rates_that_do_not_divide_are_rejected():
    with pytest.raises(InputError, match="audio rate must be a whole multiple"):
        TokenRates.from_config(RatesConfig(audio_rate=44100 / 2048))


def test_noise_levels_per_frame_and_modality_with_asymmetric_ranges():
    cfg = toy_config()
    layout = BlockLayout.build(TokenRates.from_config(cfg.rates), 0, 40, sink=True)
    video = torch.randn(8, 12, len(layout.video_ids), 2, 2)
    struct = torch.randn(8, len(layout.struct_ids), 22)
    noised = noise_batch(video, struct, layout, ForcingConfig(), generator=torch.Generator().manual_seed(0))
    sv, ss = noised.video_sigma[:, 1:], noised.struct_sigma[:, 1:]
    assert (noised.video_sigma[:, 0] == 0).all() and (noised.struct_sigma[:, 0] == 0).all()  # clean sink
    assert sv.min() >= 0 and sv.max() <= 1 and sv.max() > 0.9  # video ~ U(0, 1)
    assert ss.min() >= 0 and ss.max() <= 0.7 and ss.max() > 0.6  # structure ~ U(0, 0.7)
    assert sv.std(dim=1).min() > 0.1 and ss.std(dim=1).min() > 0.1  # independent per frame
    assert abs(float(sv.mean()) - 0.5) < 0.05 and abs(float(ss.mean()) - 0.35) < 0.05
    # x_sigma = (1 - sigma) x0 + sigma noise, v = noise - x0  =>  x0 = x_sigma - sigma v
    x0 = noised.video - noised.video_sigma[:, None, :, None, None] * noised.video_target
    torch.testing.assert_close(x0, video, atol=1e-5, rtol=0)
    custom = noise_batch(video, struct, layout, ForcingConfig(struct_range=(0.2, 0.3)))
    assert custom.struct_sigma[:, 1:].min() >= 0.2 and custom.struct_sigma[:, 1:].max() <= 0.3


def test_inference_schedule_keeps_structure_in_trained_range():
    video, struct = chunk_schedule(ForcingConfig(inference_steps=4))
    assert len(video) == 5 and video[-1] == 0 and struct[-1] == 0
    assert float(struct.max()) <= 0.7 + 1e-6 and bool((video[:-1] > video[1:]).all())


def test_losses_are_zero_at_perfect_prediction_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 12, 3, 4, 4, generator=g)
    s = torch.randn(2, 9, 22, generator=g)
    wv, ws = torch.tensor([[0.0, 1, 1]] * 2), torch.ones(2, 9)
    layout = StructureLayout(num_keypoints=5)
    assert video_loss(v, v, wv) == 0 and struct_loss(s, s, ws) == 0 and flame_loss(s, s, ws, layout) < 1e-5
    assert video_loss(v + 1, v, wv) == pytest.approx(1.0)  # MSE of a unit offset
    # sink frames (weight 0) do not count
    bad_sink = v.clone()
    bad_sink[:, :, 0] += 100
    assert video_loss(bad_sink, v, wv) == 0
    # L_flame: moving every keypoint by the 3D vector (1, 2, 2) costs its length, 3
    moved = s.clone()
    moved[..., 7:] += torch.tensor([1.0, 2.0, 2.0]).repeat(5)
    assert flame_loss(moved, s, ws, layout) == pytest.approx(3.0, abs=1e-4)
    assert lip_sync_loss(None, v, s) == 0
    assert lip_sync_loss(lambda video, audio: torch.tensor([0.2, 0.4]), v, s) == pytest.approx(0.3)
    terms = total_loss(
        LossConfig(video=2.0, struct=0.5, flame=0.0, lip_sync=1.0),
        video=torch.tensor(1.0),
        struct=torch.tensor(2.0),
        flame=torch.tensor(9.0),
        lip_sync=torch.tensor(0.25),
    )
    assert float(terms.total) == pytest.approx(2.0 + 1.0 + 0.0 + 0.25)
