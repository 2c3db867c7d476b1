"""``forcing.context_sigma``: the streaming sampler commits each generated chunk re-noised to that level
(tiny random models)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from flowstudio.avatar.inference.streaming import stream_latents
from flowstudio.avatar.model.config import DualForceConfig, ForcingConfig, toy_config
from flowstudio.avatar.model.dualforce import DualForceModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(context_sigma: float) -> DualForceModel:
    cfg = toy_config()
    cfg = dataclasses.replace(cfg, forcing=dataclasses.replace(cfg.forcing, context_sigma=context_sigma))
    torch.manual_seed(0)
    return DualForceModel(cfg).eval()


def _inputs(model: DualForceModel, chunks: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    h, w = model.config.latent_size
    reference = torch.randn(1, model.config.video_input.latent_channels, 1, h, w, generator=g)
    per_chunk = model.rates.audio_per_latent * model.rates.frames_per_chunk
    return reference, torch.randn(chunks * per_chunk, model.config.audio.feature_dim, generator=g)


def _stream(model: DualForceModel, reference: torch.Tensor, audio: torch.Tensor) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return [c.video for c in stream_latents(model, reference, audio, generator=g)]


def test_default_is_the_clean_commit_and_old_configs_load_with_it():
    assert ForcingConfig().context_sigma == 0.0
    saved = toy_config().to_dict()
    del saved["forcing"]["context_sigma"]  # a checkpoint written before the key existed
    assert DualForceConfig.from_dict(saved).forcing.context_sigma == 0.0


def test_commit_pass_gets_the_chunk_renoised_at_context_sigma():
    sigma = 0.4
    model = _model(sigma)
    reference, audio = _inputs(model)
    commits = []
    forward = model.forward

    def spy(inputs, cache=None, commit=False):
        if commit and float(inputs.video_sigma.max()) > 0:  # the sink is committed at sigma 0
            commits.append((inputs.video.clone(), inputs.video_sigma.clone(), inputs.struct_sigma.clone()))
        return forward(inputs, cache=cache, commit=commit)

    model.forward = spy
    chunks = _stream(model, reference, audio)
    assert len(commits) == len(chunks) == 4
    struct_max = model.config.forcing.struct_range[1]
    for (video, video_sigma, struct_sigma), clean in zip(commits, chunks, strict=True):
        assert torch.allclose(video_sigma, torch.full_like(video_sigma, sigma))
        assert torch.allclose(struct_sigma, torch.full_like(struct_sigma, sigma * struct_max))
        noise = (video - (1 - sigma) * clean) / sigma  # what was added is unit Gaussian noise
        assert 0.8 < float(noise.std()) < 1.2 and abs(float(noise.mean())) < 0.2


def test_context_noise_changes_later_chunks_only_and_is_seeded():
    clean_model, noisy_model = _model(0.0), _model(0.5)
    reference, audio = _inputs(clean_model)
    clean = _stream(clean_model, reference, audio)
    noisy = _stream(noisy_model, reference, audio)
    assert torch.equal(clean[0], noisy[0])  # chunk 0 is sampled before any commit of generated frames
    assert float((clean[2] - noisy[2]).abs().max()) > 1e-3
    again = _stream(noisy_model, reference, audio)
    assert all(torch.equal(a, b) for a, b in zip(noisy, again, strict=True))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_bad_context_sigma_is_refused(bad: float):
    with pytest.raises(ValueError, match="context_sigma"):
        ForcingConfig(context_sigma=bad)


def test_call_override_equals_the_config_value_and_is_refused_out_of_range():
    from flowstudio.errors import InputError

    in_config, plain = _model(0.5), _model(0.0)
    reference, audio = _inputs(plain)
    g = torch.Generator().manual_seed(7)
    overridden = [c.video for c in stream_latents(plain, reference, audio, generator=g, context_sigma=0.5)]
    configured = _stream(in_config, reference, audio)
    assert all(torch.equal(a, b) for a, b in zip(overridden, configured, strict=True))
    g = torch.Generator().manual_seed(7)  # and 0 on a 0.5 model is the clean commit
    cleaned = [c.video for c in stream_latents(in_config, reference, audio, generator=g, context_sigma=0.0)]
    assert all(torch.equal(a, b) for a, b in zip(cleaned, _stream(plain, reference, audio), strict=True))
    for bad in (-0.2, 1.0):
        with pytest.raises(InputError, match="context_sigma"):
            next(stream_latents(plain, reference, audio, context_sigma=bad))


def test_request_refuses_context_sigma_of_one():
    """The CLI threading is tested with audio guidance's in test_avatar_guidance.py (SAMPLER_OPTIONS)."""
    from pydantic import ValidationError

    from flowstudio.jobs import AvatarRequest

    with pytest.raises(ValidationError, match="context_sigma"):
        AvatarRequest(image=__file__, audio=__file__, context_sigma=1.0)
    assert AvatarRequest(image=__file__, audio=__file__).context_sigma is None  # the model config's


def test_audio_guidance_defaults_to_the_config_value():
    cfg = toy_config()
    guided = dataclasses.replace(cfg, forcing=dataclasses.replace(cfg.forcing, audio_guidance=3.0))
    torch.manual_seed(0)
    model = DualForceModel(guided).eval()
    reference, audio = _inputs(model)
    by_config = _stream(model, reference, audio)
    g = torch.Generator().manual_seed(7)
    explicit = [c.video for c in stream_latents(model, reference, audio, generator=g, audio_guidance=3.0)]
    assert all(torch.equal(a, b) for a, b in zip(by_config, explicit, strict=True))
    g = torch.Generator().manual_seed(7)
    off = [c.video for c in stream_latents(model, reference, audio, generator=g, audio_guidance=1.0)]
    assert float((off[-1] - by_config[-1]).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="audio_guidance"):
        ForcingConfig(audio_guidance=-1.0)
