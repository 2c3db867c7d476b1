"""Driving the video with a given structure (``stream_latents(structure=...)``,
``evaluate_model(truth_structure=True)``) and ``benchmarks/avatar_fvd_parts.py``'s measurements."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from flowstudio.avatar.inference.streaming import stream_latents
from flowstudio.avatar.model.config import toy_config
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script():
    spec = importlib.util.spec_from_file_location("avatar_fvd_parts", BENCHMARKS / "avatar_fvd_parts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _setup(chunks: int = 3) -> tuple[DualForceModel, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = DualForceModel(toy_config()).eval()
    g = torch.Generator().manual_seed(1)
    h, w = model.config.latent_size
    reference = torch.randn(1, model.config.video_input.latent_channels, 1, h, w, generator=g)
    per_chunk = model.rates.audio_per_latent * model.rates.frames_per_chunk
    audio = torch.randn(chunks * per_chunk, model.config.audio.feature_dim, generator=g)
    need = model.rates.span(chunks - 1).struct[1]
    structure = torch.randn(need, model.config.struct.in_channels, generator=g)
    return model, reference, audio, structure


def _stream(model, reference, audio, **kwargs) -> list:
    return list(stream_latents(model, reference, audio, generator=torch.Generator().manual_seed(7), **kwargs))


def test_a_given_structure_is_what_each_chunk_carries_and_the_video_sees_it():
    model, reference, audio, structure = _setup()
    free = _stream(model, reference, audio)
    driven = _stream(model, reference, audio, structure=structure)
    again = _stream(model, reference, audio, structure=structure)
    for chunk in driven:
        span = model.rates.span(chunk.index).struct
        assert torch.equal(chunk.struct[0], structure[span[0] : span[1]])
    assert all(torch.equal(a.video, b.video) for a, b in zip(driven, again, strict=True))  # seeded
    # the bridge carries the structure into the video: another motion, another video
    assert not torch.allclose(free[-1].video, driven[-1].video)
    other = _stream(model, reference, audio, structure=structure.flip(0))
    assert not torch.allclose(other[-1].video, driven[-1].video)


def test_a_given_structure_with_guidance_drives_both_branches():
    model, reference, audio, structure = _setup(chunks=2)
    driven = _stream(model, reference, audio, structure=structure, audio_guidance=3.0)
    assert torch.equal(
        driven[1].struct[0], structure[model.rates.span(1).struct[0] :][: driven[1].struct.shape[1]]
    )


def test_a_wrong_given_structure_says_what_is_wrong():
    model, reference, audio, structure = _setup()
    with pytest.raises(InputError, match=r"must be \(frames, 22\)"):
        _stream(model, reference, audio, structure=structure[:, :7])
    with pytest.raises(InputError, match="the 3 chunks of this audio need 12"):
        _stream(model, reference, audio, structure=structure[:5])


def test_evaluating_driven_by_the_truth_gives_the_truths_structure(tmp_path, monkeypatch):
    from flowstudio.avatar.evaluation.evaluate import evaluate_model
    from flowstudio.avatar.inference import generate
    from flowstudio.worlds.faces_dataset import make_faces_dataset

    monkeypatch.setattr(generate, "TOY_CHECKPOINT", tmp_path / "no-packaged-model", raising=False)
    data = tmp_path / "held-out"
    make_faces_dataset(data, 1, seed=1000, seconds=0.8, height=64, width=64, workers=1, progress=False)
    driven = evaluate_model(data, clips=1, progress=False, truth_structure=True)
    free = evaluate_model(data, clips=1, progress=False)
    assert driven["settings"]["truth_structure"] is True and free["settings"]["truth_structure"] is False
    assert driven["summary"]["structure_err_pose"]["mean"] < 1e-6
    assert free["summary"]["structure_err_pose"]["mean"] > 1e-3


def test_fvd_parts_put_a_shift_where_it_is():
    parts = _script().fvd_parts
    rng = np.random.default_rng(0)
    truth = [rng.normal(size=(30, 6)) for _ in range(4)]
    same = parts(truth, truth)
    assert same["fvd_toy"] == pytest.approx(0.0, abs=1e-9)
    shifted = [x + np.array([1.0, 1.0, 0, 0, 0, 0]) for x in truth]  # the appearance third only
    out = parts(shifted, truth)
    assert out["fvd_toy"] == pytest.approx(2.0, rel=1e-6) and out["mean_share"] == pytest.approx(1.0)
    assert out["fd_appearance"] == pytest.approx(2.0, rel=1e-6)
    assert out["fd_spread"] == pytest.approx(0.0, abs=1e-9) and out["fd_change"] == pytest.approx(
        0.0, abs=1e-9
    )
    drift = [np.concatenate([x[:10], x[10:] + np.array([2.0, 0, 0, 0, 0, 0])]) for x in truth]
    late = parts(drift, truth)
    assert late["fd_appearance_first"] == pytest.approx(0.0, abs=1e-9) and late["fd_appearance_last"] > 1.0


def test_video_motion_finds_a_jump_at_each_chunk_boundary():
    motion = _script().video_motion
    steady = np.repeat(np.arange(16, dtype=np.uint8)[:, None, None, None] * 2, 8, axis=1)
    steady = np.repeat(np.repeat(steady, 8, axis=2), 3, axis=3)  # brightness +2 every frame
    even = motion(steady, 4)
    assert even["change_inside"] == pytest.approx(even["change_boundary"])
    jumps = steady.copy()
    for start in range(4, 16, 4):
        jumps[start:] += 10  # a jump where each chunk of 4 begins
    uneven = motion(jumps, 4)
    assert uneven["change_boundary"] > 5 * uneven["change_inside"]
    assert uneven["change_inside"] == pytest.approx(even["change_inside"])
    assert _script().structure_motion(np.ones((10, 22))) == 0.0


def test_picture_has_a_labelled_strip_per_row_even_for_a_short_clip(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = {
        "truth": rng.integers(0, 255, (420, 64, 64, 3), dtype=np.uint8),
        "short": rng.integers(0, 255, (100, 64, 64, 3), dtype=np.uint8),  # no frames 400-411
    }
    out = tmp_path / "p.png"
    _script().picture(rows, out)
    # 24 frames of 66 px (with their border) at 3x; two rows of an 18 px label over 198 px of frames
    assert Image.open(out).size == (24 * 66 * 3, 2 * (18 + 66 * 3))


def test_eval_cli_drives_with_the_truth_and_refuses_it_with_generated_clips(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from flowstudio.avatar.cli import avatar_app
    from flowstudio.avatar.inference import generate
    from flowstudio.worlds.faces_dataset import make_faces_dataset

    monkeypatch.setattr(generate, "TOY_CHECKPOINT", tmp_path / "no-packaged-model", raising=False)
    data = tmp_path / "held-out"
    make_faces_dataset(data, 1, seed=1000, seconds=0.8, height=64, width=64, workers=1, progress=False)
    report = tmp_path / "report.json"
    args = ["eval", "--data", str(data), "--clips", "1", "--truth-structure", "--out", str(report)]
    result = CliRunner().invoke(avatar_app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads(report.read_text())
    assert saved["settings"]["truth_structure"] is True
    assert saved["summary"]["structure_err_pose"]["mean"] < 1e-6
    refused = CliRunner().invoke(
        avatar_app, ["eval", "--data", str(data), "--generated", str(tmp_path), "--truth-structure"]
    )
    assert refused.exit_code != 0 and "does nothing with --generated" in refused.output
