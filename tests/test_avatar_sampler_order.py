"""Sampler knobs for a video that follows its structure: ``forcing.video_guidance`` (the video's own
guidance scale) and ``forcing.structure_first`` (structure sampled to the end before the video)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from flowstudio.avatar.inference.streaming import stream_latents
from flowstudio.avatar.model.config import toy_config
from flowstudio.avatar.model.diffusion_forcing import chunk_schedule
from flowstudio.avatar.model.dualforce import DualForceModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(**forcing) -> tuple[DualForceModel, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    cfg = toy_config().replace({"bridge": {"frame_aligned": True}, "forcing": forcing})
    model = DualForceModel(cfg).eval()
    g = torch.Generator().manual_seed(1)
    h, w = cfg.latent_size
    reference = torch.randn(1, cfg.video_input.latent_channels, 1, h, w, generator=g)
    audio = torch.randn(
        3 * model.rates.audio_per_latent * model.rates.frames_per_chunk, cfg.audio.feature_dim, generator=g
    )
    return model, reference, audio


def _chunks(model, reference, audio, **kwargs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    return [(c.video, c.struct) for c in stream_latents(model, reference, audio, generator=g, **kwargs)]


def _with_forcing(model: DualForceModel, **forcing) -> DualForceModel:
    model.config = dataclasses.replace(
        model.config, forcing=dataclasses.replace(model.config.forcing, **forcing)
    )
    return model


def test_video_guidance_defaults_to_the_audio_guidance():
    model, reference, audio = _model(audio_guidance=3.0)
    both = _chunks(model, reference, audio)
    same = _chunks(_with_forcing(model, video_guidance=3.0), reference, audio)
    for (v1, s1), (v2, s2) in zip(both, same, strict=True):
        assert torch.equal(v1, v2) and torch.equal(s1, s2)
    apart = _chunks(_with_forcing(model, video_guidance=1.0), reference, audio)
    assert not torch.allclose(both[0][0], apart[0][0])  # the video is no longer guided...
    # ...while the first chunk's structure velocity is still guided: its structure differs from unguided
    unguided = _chunks(_with_forcing(model, audio_guidance=1.0, video_guidance=1.0), reference, audio)
    assert not torch.allclose(apart[0][1], unguided[0][1])


def test_video_guidance_alone_turns_the_two_row_path_on():
    model, reference, audio = _model(audio_guidance=1.0, video_guidance=2.0)
    guided = _chunks(model, reference, audio)
    plain = _chunks(_with_forcing(model, video_guidance=None), reference, audio)
    assert not torch.allclose(guided[0][0], plain[0][0])


def test_structure_first_samples_the_structure_then_the_video_on_it():
    model, reference, audio = _model(structure_first=True)
    steps = model.config.forcing.inference_steps
    sig_v, sig_s = chunk_schedule(model.config.forcing)
    calls: list[tuple[float, float, torch.Tensor]] = []
    forward = model.forward

    def record(inputs, cache=None, commit=False, **kw):
        if not commit:
            calls.append(
                (float(inputs.video_sigma[0, 0]), float(inputs.struct_sigma[0, 0]), inputs.struct.clone())
            )
        return forward(inputs, cache=cache, commit=commit, **kw)

    model.forward = record  # type: ignore[method-assign]
    chunks = _chunks(model, reference, audio)
    first = calls[: 2 * steps]
    assert len(calls) == 3 * 2 * steps  # two passes of `steps` calls per chunk
    # pass 1: the video waits at pure noise while the structure walks its grid
    assert [c[0] for c in first[:steps]] == [1.0] * steps
    assert [c[1] for c in first[:steps]] == pytest.approx(sig_s[:-1].tolist())
    # pass 2: the video walks its grid on the finished structure, held clean (level 0)
    assert [c[0] for c in first[steps:]] == pytest.approx(sig_v[:-1].tolist())
    assert [c[1] for c in first[steps:]] == [0.0] * steps
    for _, _, struct in first[steps:]:
        assert torch.equal(struct, chunks[0][1])  # the structure the chunk yields and commits


def test_structure_first_leaves_a_driven_stream_driven():
    model, reference, audio = _model()
    given = torch.randn(1 + 3 * 4 * model.rates.frames_per_chunk, model.config.struct.in_channels)[1:]
    driven = _chunks(model, reference, audio, structure=given)
    both = _chunks(_with_forcing(model, structure_first=True), reference, audio, structure=given)
    for (v1, s1), (v2, s2) in zip(driven, both, strict=True):
        assert torch.equal(v1, v2) and torch.equal(s1, s2)


def test_negative_video_guidance_is_refused():
    with pytest.raises(ValueError, match="video_guidance"):
        toy_config().replace({"forcing": {"video_guidance": -1.0}})


def test_clean_structure_items_are_noise_free_and_carry_no_structure_loss():
    from flowstudio.avatar.model.config import ForcingConfig
    from flowstudio.avatar.model.diffusion_forcing import noise_batch
    from flowstudio.avatar.model.rates import BlockLayout, TokenRates

    cfg = toy_config()
    layout = BlockLayout.build(TokenRates.from_config(cfg.rates), 0, 3, sink=True)
    h, w = cfg.latent_size
    video = torch.randn(64, cfg.video_input.latent_channels, len(layout.video_ids), h, w)
    struct = torch.randn(64, len(layout.struct_ids), cfg.struct.in_channels)
    plain = noise_batch(video, struct, layout, ForcingConfig(), generator=torch.Generator().manual_seed(0))
    half = noise_batch(
        video,
        struct,
        layout,
        ForcingConfig(clean_struct_prob=0.5),
        generator=torch.Generator().manual_seed(0),
    )
    clean = (half.struct_sigma == 0).all(1)
    assert 16 < int(clean.sum()) < 48  # about half the items
    assert torch.equal(half.struct[clean], struct[clean])  # given as they are
    assert (half.struct_weight[clean] == 0).all()  # and not scored
    kept = ~clean
    assert torch.equal(half.struct_weight[kept], plain.struct_weight[kept])
    assert torch.equal(half.struct_sigma[kept], plain.struct_sigma[kept])  # the other draws are unchanged
    assert torch.equal(half.video, plain.video) and torch.equal(half.video_sigma, plain.video_sigma)
    with pytest.raises(ValueError, match="clean_struct_prob"):
        ForcingConfig(clean_struct_prob=1.5)
