"""Audio classifier-free guidance in the DualForce sampler and audio dropout in training, on tiny
random models."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from flowstudio.avatar.cli import avatar_app
from flowstudio.avatar.inference.streaming import _inputs, _sink_inputs, stream_latents
from flowstudio.avatar.model.audio import LogMelExtractor, silent_features
from flowstudio.avatar.model.config import toy_config
from flowstudio.avatar.model.diffusion_forcing import chunk_schedule
from flowstudio.avatar.model.dualforce import DualForceInputs, DualForceModel
from flowstudio.avatar.model.rates import BlockLayout
from flowstudio.avatar.training.train import SyntheticTalkingDataset, TrainConfig, training_step
from flowstudio.core.flow import classifier_free_guidance
from flowstudio.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _setup(seed: int = 0, chunks: int = 5) -> tuple[DualForceModel, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = DualForceModel(toy_config()).eval()
    g = torch.Generator().manual_seed(seed + 1)
    h, w = model.config.latent_size
    reference = torch.randn(1, model.config.video_input.latent_channels, 1, h, w, generator=g)
    per_chunk = model.rates.audio_per_latent * model.rates.frames_per_chunk
    audio = torch.randn(chunks * per_chunk, model.config.audio.feature_dim, generator=g)
    return model, reference, audio


def _run(
    model, reference, audio, scale: float | None, seed: int = 7
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    kwargs = {} if scale is None else {"audio_guidance": scale}
    g = torch.Generator().manual_seed(seed)
    return [(c.video, c.struct) for c in stream_latents(model, reference, audio, generator=g, **kwargs)]


@torch.no_grad()
def _plain_sampler(model, reference, audio, seed: int = 7) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The sampler as it was before audio guidance (one row, no guidance), kept here verbatim."""
    cfg, rates = model.config, model.rates
    sig_v, sig_s = chunk_schedule(cfg.forcing, None)
    generator = torch.Generator().manual_seed(seed)
    audio = audio[None]
    cache = model.new_cache()
    model(_sink_inputs(model, reference, audio.shape[2]), cache=cache, commit=True)
    out = []
    for c in range(rates.num_chunks(audio.shape[1])):
        layout, span = BlockLayout.build(rates, c, c + 1, sink=False), rates.span(c)
        audio_c = audio[:, span.audio[0] : span.audio[1]]
        shape_v = (1, reference.shape[1], rates.frames_per_chunk, *reference.shape[3:])
        x_v = torch.randn(shape_v, generator=generator)
        x_s = sig_s[0] * torch.randn((1, len(layout.struct_ids), cfg.struct.in_channels), generator=generator)
        for i in range(len(sig_v) - 1):
            v_v, v_s = model(_inputs(layout, x_v, sig_v[i], x_s, sig_s[i], audio_c, reference), cache=cache)
            x_v = x_v + (sig_v[i + 1] - sig_v[i]) * v_v
            x_s = x_s + (sig_s[i + 1] - sig_s[i]) * v_s
        model(_inputs(layout, x_v, 0.0, x_s, 0.0, audio_c, reference), cache=cache, commit=True)
        out.append((x_v, x_s))
    return out


def test_guidance_one_is_the_unguided_sampler_bit_for_bit():
    model, reference, audio = _setup()
    plain = _plain_sampler(model, reference, audio)
    for got in (_run(model, reference, audio, None), _run(model, reference, audio, 1.0)):
        assert len(got) == len(plain) == 5
        for (gv, gs), (pv, ps) in zip(got, plain, strict=True):
            assert torch.equal(gv, pv) and torch.equal(gs, ps)


def test_guidance_above_one_changes_the_output_and_is_seeded():
    model, reference, audio = _setup()
    plain = _run(model, reference, audio, 1.0)
    guided = _run(model, reference, audio, 4.0)
    again = _run(model, reference, audio, 4.0)
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(guided, again, strict=True)
    )
    assert all(
        g[0].shape == p[0].shape and g[1].shape == p[1].shape for g, p in zip(guided, plain, strict=True)
    )
    assert float((guided[0][0] - plain[0][0]).abs().max()) > 1e-3
    assert float((guided[0][1] - plain[0][1]).abs().max()) > 1e-3


def _full_velocity(model, reference, videos, structs, at, sound) -> tuple[torch.Tensor, torch.Tensor]:
    """The last chunk's velocities from one full-sequence forward over ``videos`` / ``structs`` (sink,
    past chunks, the noisy chunk); ``at``: the layout, the chunk's rows and its two sigmas."""
    layout, rows_v, rows_s, sigma_video, sigma_struct = at
    video, struct = torch.cat(videos, dim=2), torch.cat(structs, dim=1)
    sigma_v, sigma_s = torch.zeros(1, video.shape[2]), torch.zeros(1, struct.shape[1])
    sigma_v[:, rows_v], sigma_s[:, rows_s] = sigma_video, sigma_struct
    inputs = DualForceInputs(video, sigma_v, struct, sigma_s, sound, layout, reference)
    v_v, v_s = model(inputs, window_positions=True)
    return v_v.index_select(2, rows_v), v_s.index_select(1, rows_s)


@torch.no_grad()
def _offline_guided(
    model, reference, audio, scale: float, seed: int = 7
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Guidance without a cache: every step is two full-sequence forwards over [sink, the chosen past
    chunks, the noisy chunk] in the streaming window-relative layout, one with the audio and one with
    silence throughout (separate B=1 calls, so batching the branches is checked too)."""
    cfg, rates = model.config, model.rates
    sig_v, sig_s = chunk_schedule(cfg.forcing, None)
    generator = torch.Generator().manual_seed(seed)
    sink = _sink_inputs(model, reference, audio.shape[1])
    past_v, past_s = [sink.video], [sink.struct]
    out = []
    for c in range(rates.num_chunks(audio.shape[0])):
        layout = BlockLayout.build(rates, 0, c + 1, sink=True)
        end = rates.span(c).audio[1]
        sink_rows = int((layout.audio_ids == 0).sum())
        heard = torch.cat([torch.zeros(sink_rows, audio.shape[1]), audio[:end]])[None]
        assert heard.shape[1] == len(layout.audio_ids)
        chunk_layout = BlockLayout.build(rates, c, c + 1, sink=False)
        shape_v = (1, reference.shape[1], rates.frames_per_chunk, *reference.shape[3:])
        x_v = torch.randn(shape_v, generator=generator)
        x_s = sig_s[0] * torch.randn(
            (1, len(chunk_layout.struct_ids), cfg.struct.in_channels), generator=generator
        )
        rows_v = torch.nonzero(layout.video_ids == c + 1).squeeze(1)
        rows_s = torch.nonzero(layout.struct_ids == c + 1).squeeze(1)

        for i in range(len(sig_v) - 1):
            at = (layout, rows_v, rows_s, float(sig_v[i]), float(sig_s[i]))
            cond = _full_velocity(model, reference, past_v + [x_v], past_s + [x_s], at, heard)
            neg = _full_velocity(model, reference, past_v + [x_v], past_s + [x_s], at, silent_features(heard))
            v_v = classifier_free_guidance(cond[0], neg[0], scale)
            v_s = classifier_free_guidance(cond[1], neg[1], scale)
            x_v = x_v + (sig_v[i + 1] - sig_v[i]) * v_v
            x_s = x_s + (sig_s[i + 1] - sig_s[i]) * v_s
        past_v.append(x_v)
        past_s.append(x_s)
        out.append((x_v, x_s))
    return out


def test_guided_streaming_equals_guided_full_sequence_sampling():
    """Cached guided streaming (two cache rows, both committed with the chosen chunk) equals the same
    guidance computed from full-sequence forwards, past the window's first eviction (5 chunks, window 3);
    tolerance 1e-4 as ``avatar verify``'s cache check."""
    model, reference, audio = _setup()
    assert model.config.forcing.window_chunks == 3
    streamed = _run(model, reference, audio, 3.0)
    offline = _offline_guided(model, reference, audio, 3.0)
    for (sv, ss), (ov, os_) in zip(streamed, offline, strict=True):
        assert float((sv - ov).abs().max()) < 1e-4
        assert float((ss - os_).abs().max()) < 1e-4
    # the check has teeth: the unguided stream is far from the guided offline result
    plain = _run(model, reference, audio, 1.0)
    assert float((plain[-1][0] - offline[-1][0]).abs().max()) > 1e-2


def test_silent_features_are_the_extractors_silence_to_the_model():
    """Zeros and the log-mel of a silent waveform (a constant row) are one condition after the audio
    module's LayerNorm; real speech is another."""
    model, _, _ = _setup()
    dim = model.config.audio.feature_dim
    silence = LogMelExtractor(dim)(np.zeros(16000, np.float32), 16000)[None]
    assert torch.allclose(silence, silence[..., :1].expand_as(silence))  # constant: log(1e-5)
    ids = torch.ones(silence.shape[1], dtype=torch.long)
    ids[:8] = 0  # a sink row too
    with torch.no_grad():
        zero_v, zero_s = model.audio(silent_features(silence), ids)
        mel_v, mel_s = model.audio(silence, ids)
        tone = np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32)
        speech_v, _ = model.audio(LogMelExtractor(dim)(tone, 16000)[None], ids)
    assert torch.allclose(zero_v, mel_v, atol=1e-4) and torch.allclose(zero_s, mel_s, atol=1e-4)
    assert float((speech_v - zero_v).abs().max()) > 1e-2


def test_bad_guidance_is_refused():
    model, reference, audio = _setup()
    with pytest.raises(InputError, match="audio_guidance"):
        next(stream_latents(model, reference, audio, audio_guidance=-1.0))
    from flowstudio.jobs import AvatarRequest

    with pytest.raises(Exception, match="audio_guidance"):
        AvatarRequest(image=__file__, audio=__file__, audio_guidance=float("nan"))
    assert AvatarRequest(image=__file__, audio=__file__).audio_guidance is None  # the model config's


def _batch(model, rows: int = 6):
    data = SyntheticTalkingDataset(model.config, 2, rows)
    return data, data.batch(list(range(rows)))


class _Spy(torch.nn.Module):
    """Records the audio each call sees, then runs the model."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, inputs):
        self.seen.append(inputs.audio.clone())
        return self.model(inputs)


def test_audio_dropout_zero_changes_nothing_and_one_gives_silence():
    model, _, _ = _setup()
    data, batch = _batch(model)
    spy = _Spy(model)
    cfg = model.config
    with torch.no_grad():
        base = training_step(spy, batch, data.layout, torch.Generator().manual_seed(3), cfg)
        off = training_step(spy, batch, data.layout, torch.Generator().manual_seed(3), cfg, audio_dropout=0.0)
        full = training_step(
            spy, batch, data.layout, torch.Generator().manual_seed(3), cfg, audio_dropout=1.0
        )
        half = training_step(
            spy, batch, data.layout, torch.Generator().manual_seed(3), cfg, audio_dropout=0.5
        )
    assert torch.equal(spy.seen[0], batch["audio"]) and torch.equal(spy.seen[1], batch["audio"])
    assert all(torch.equal(getattr(off, k), getattr(base, k)) for k in base.__dict__)
    assert torch.equal(spy.seen[2], silent_features(batch["audio"]))
    assert not torch.equal(full.video, base.video)
    # p = 0.5: whole samples are dropped, some but (for this draw) not all
    dropped = [bool((spy.seen[3][b] == 0).all()) for b in range(batch["audio"].shape[0])]
    kept = [torch.equal(spy.seen[3][b], batch["audio"][b]) for b in range(batch["audio"].shape[0])]
    assert all(d != k for d, k in zip(dropped, kept, strict=True)) and 0 < sum(dropped) < len(dropped)
    del half


def test_train_config_audio_dropout():
    assert TrainConfig.from_dict({}).audio_dropout == 0.0
    assert TrainConfig.from_dict({"audio_dropout": 0.1}).audio_dropout == 0.1
    for bad in (-0.1, 1.5, "x", True):
        with pytest.raises(InputError, match="audio_dropout"):
            TrainConfig.from_dict({"audio_dropout": bad})


def _write_wav(path: Path, seconds: float = 0.32, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes((samples * 32767).astype(np.int16).tobytes())
    return path


#: the sampler options of ``avatar generate`` / ``avatar eval``: (flag, report key, a value, the toy config's)
SAMPLER_OPTIONS = [
    ("--audio-guidance", "audio_guidance", 2.5, 1.0),
    ("--context-sigma", "context_sigma", 0.3, 0.0),
]


@pytest.mark.parametrize(("flag", "key", "value", "default"), SAMPLER_OPTIONS)
def test_cli_generate_threads_sampler_options(
    tmp_path: Path, flag: str, key: str, value: float, default: float
):
    from PIL import Image

    torch.manual_seed(1)
    DualForceModel(toy_config()).save_pretrained(tmp_path / "model")
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "ref.png")
    audio = _write_wav(tmp_path / "speech.wav")
    args = ["generate", "--image", str(tmp_path / "ref.png"), "--audio", str(audio)]
    args += ["--checkpoint", str(tmp_path / "model"), "--out", str(tmp_path / "g.mp4")]
    result = CliRunner().invoke(avatar_app, [*args, flag, str(value)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])[key] == value
    record = json.loads((tmp_path / "g.json").read_text())  # the JobResult record beside the mp4
    assert record["request"][key] == value and record["settings"][key] == value
    result = CliRunner().invoke(avatar_app, args)  # no option: the model config's value, recorded
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "g.json").read_text())["settings"][key] == default


@pytest.mark.parametrize(("flag", "key", "value", "default"), SAMPLER_OPTIONS)
def test_cli_eval_threads_sampler_options(
    tmp_path: Path, monkeypatch, flag: str, key: str, value: float, default: float
):
    seen: dict = {}

    def fake_evaluate_model(data, **kwargs):
        seen.update(kwargs)
        return {"metrics": {}, "summary": {}, "cases": [], "notes": [], "settings": {}}

    monkeypatch.setattr("flowstudio.avatar.evaluation.evaluate.evaluate_model", fake_evaluate_model)
    monkeypatch.setattr("flowstudio.avatar.evaluation.evaluate.report_table", lambda report: "table")
    result = CliRunner().invoke(avatar_app, ["eval", "--data", str(tmp_path), flag, str(value)])
    assert result.exit_code == 0, result.output
    assert seen[key] == value
