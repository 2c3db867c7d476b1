"""Streaming generation (progressive yields, flat cache) and the `avatar` CLI on the random toy model."""

from __future__ import annotations

import dataclasses
import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from flowstudio.avatar.cli import avatar_app
from flowstudio.avatar.inference.streaming import stream_frames
from flowstudio.avatar.model.audio import LogMelExtractor
from flowstudio.avatar.model.config import toy_config
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _speech(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes((samples * 32767).astype(np.int16).tobytes())
    return path


def _write_png(path: Path, size: int = 64) -> Path:
    from PIL import Image

    yy, xx = np.mgrid[:size, :size]
    image = np.stack([xx * 4 % 256, yy * 4 % 256, (xx + yy) * 2 % 256], axis=-1).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path


def test_stream_yields_frames_progressively():
    torch.manual_seed(0)
    model = DualForceModel(toy_config()).eval()
    features = LogMelExtractor(40)(_speech(0.8), 16000)  # 40 feature frames = 5 chunks of 0.16 s
    chunks_done: list[dict[str, float]] = []
    gen = stream_frames(model, np.zeros((64, 64, 3), np.uint8), features, callback=chunks_done.append)
    first = next(gen)
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert len(chunks_done) == 1, "the first frame must come out after the first chunk, not the whole clip"
    rest = list(gen)
    assert len(rest) + 1 == 5 * 4  # 5 chunks x 1 latent frame x 4 frames
    assert len(chunks_done) == 5
    # the rolling window keeps the cache flat: sink (16 tokens) + window 3 x 16 tokens
    assert [c["cache_tokens"] for c in chunks_done] == [32, 48, 64, 64, 64]


def test_stream_is_seeded():
    torch.manual_seed(0)
    model = DualForceModel(toy_config()).eval()
    features = LogMelExtractor(40)(_speech(0.32), 16000)
    a = np.stack(list(stream_frames(model, np.zeros((64, 64, 3), np.uint8), features, seed=3)))
    b = np.stack(list(stream_frames(model, np.zeros((64, 64, 3), np.uint8), features, seed=3)))
    assert np.array_equal(a, b)


def test_bad_inputs_give_clear_errors():
    model = DualForceModel(toy_config()).eval()
    short = LogMelExtractor(40)(_speech(0.1), 16000)
    with pytest.raises(InputError, match="audio too short"):
        next(stream_frames(model, np.zeros((64, 64, 3), np.uint8), short))
    with pytest.raises(InputError, match="reference image is 32x48, this model takes 64x64"):
        next(stream_frames(model, np.zeros((32, 48, 3), np.uint8), short))


def test_cli_generate_writes_mp4_with_audio(tmp_path: Path, monkeypatch):
    import av

    monkeypatch.setattr("flowstudio.avatar.inference.generate.TOY_CHECKPOINT", tmp_path / "no-packaged-model")

    image, audio = _write_png(tmp_path / "ref.png"), _write_wav(tmp_path / "speech.wav", _speech(0.64))
    out = tmp_path / "talk.mp4"
    result = CliRunner().invoke(
        avatar_app, ["generate", "--image", str(image), "--audio", str(audio), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "randomly initialised" in result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["frames"] == 16 and report["random_weights"] is True
    with av.open(str(out)) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1


def test_cli_errors(tmp_path: Path):
    runner = CliRunner()
    image = _write_png(tmp_path / "small.png", size=32)  # another size is fitted (tests/test_bad_input.py)
    audio = _write_wav(tmp_path / "speech.wav", _speech(0.64))
    good = _write_png(tmp_path / "good.png")
    result = runner.invoke(
        avatar_app,
        [
            "generate",
            "--image",
            str(good),
            "--audio",
            str(tmp_path / "missing.wav"),
            "--out",
            str(tmp_path / "x.mp4"),
        ],
    )
    assert result.exit_code == 2 and "not found" in result.output
    result = runner.invoke(
        avatar_app,
        [
            "generate",
            "--image",
            str(image),
            "--audio",
            str(audio),
            "--out",
            str(tmp_path / "x.mp4"),
            "--checkpoint",
            str(tmp_path / "no-model"),
        ],
    )
    assert result.exit_code == 2 and "config.json" in result.output


def test_cli_generate_from_checkpoint_folder(tmp_path: Path):
    torch.manual_seed(1)
    DualForceModel(toy_config()).save_pretrained(tmp_path / "model")
    image, audio = _write_png(tmp_path / "ref.png"), _write_wav(tmp_path / "speech.wav", _speech(0.32))
    result = CliRunner().invoke(
        avatar_app,
        [
            "generate",
            "--image",
            str(image),
            "--audio",
            str(audio),
            "--out",
            str(tmp_path / "talk.mp4"),
            "--checkpoint",
            str(tmp_path / "model"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["random_weights"] is False and report["frames"] == 8 and "randomly" not in result.output


def test_packaged_toy_model_is_the_default(tmp_path: Path):
    from flowstudio.avatar.inference.generate import TOY_CHECKPOINT, load_model

    if not (TOY_CHECKPOINT / "model.safetensors").is_file():
        pytest.skip("no packaged toy DualForce in this checkout")
    model, random_weights = load_model(None)
    assert random_weights is False and model.config.name == "toy"
    assert model.config.structure.mean is not None  # trained on TalkingShapes with its statistics


def _model_attributes(model: torch.nn.Module) -> dict[str, dict[str, int]]:
    """Every plain attribute of every module and attention processor (not parameters/buffers/children),
    as ``{owner: {name: id(value)}}``; per-call or per-stream state would show up here."""
    skip = {"_parameters", "_buffers", "_modules"}
    out: dict[str, dict[str, int]] = {}
    for name, module in model.named_modules():
        out[name] = {k: id(v) for k, v in vars(module).items() if k not in skip}
        processor = getattr(module, "processor", None)
        if processor is not None:
            out[name + ".processor"] = {k: id(v) for k, v in vars(processor).items()}
    return out


def _holds(value: object, types: tuple[type, ...]) -> bool:
    """``value`` is one of ``types`` or a dataclass (a per-call state record) with such a field."""
    if isinstance(value, types):
        return True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_holds(getattr(value, f.name), types) for f in dataclasses.fields(value))
    return False


def test_one_model_serves_interleaved_streams():
    """Two streams with different inputs, interleaved chunk by chunk on one model, each equal that
    stream run alone bit for bit; afterwards the model holds no per-stream state."""
    from flowstudio.avatar.inference.streaming import stream_latents
    from flowstudio.avatar.model.attention import AttentionCall
    from flowstudio.avatar.model.codec import ToyCodec
    from flowstudio.avatar.model.kv_cache import DualForceCache, KVCache

    torch.manual_seed(0)
    model = DualForceModel(toy_config()).eval()
    codec = ToyCodec.for_config(model.config)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    attributes = _model_attributes(model)
    streams = []
    for seed in (1, 2):
        image = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        audio = torch.randn(40, model.config.audio.feature_dim, generator=torch.Generator().manual_seed(seed))
        streams.append((codec.encode_image(image), audio, seed))

    def run(reference, audio, seed):
        return stream_latents(model, reference, audio, generator=torch.Generator().manual_seed(10 + seed))

    alone = [[(c.video, c.struct) for c in run(*s)] for s in streams]
    assert not torch.equal(alone[0][0][0], alone[1][0][0])
    a, b = run(*streams[0]), run(*streams[1])
    interleaved: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[], []]
    for chunk_a, chunk_b in zip(a, b, strict=True):  # a chunk of A, then a chunk of B, ...
        interleaved[0].append((chunk_a.video, chunk_a.struct))
        interleaved[1].append((chunk_b.video, chunk_b.struct))
    for got, want in zip(interleaved, alone, strict=True):
        assert len(got) == len(want) == 5
        for (gv, gs), (wv, ws) in zip(got, want, strict=True):
            assert torch.equal(gv, wv) and torch.equal(gs, ws)

    assert _model_attributes(model) == attributes  # no attribute added, replaced or rebound
    stream_types = (torch.Tensor, KVCache, DualForceCache, AttentionCall)
    for module in model.modules():
        owners = [module] + ([module.processor] if hasattr(module, "processor") else [])
        for owner in owners:
            plain = {k: v for k, v in vars(owner).items() if k not in {"_parameters", "_buffers", "_modules"}}
            assert not any(_holds(v, stream_types) for v in plain.values()), (type(owner), plain.keys())
    state = model.state_dict()
    assert state.keys() == weights.keys() and all(torch.equal(state[k], weights[k]) for k in weights)
