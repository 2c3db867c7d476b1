"""The burnt-in text filter (flowstudio.data.text) on a tiny DB-layout ONNX network: (1, 3, S, S) BGR
input with the DB mean, (1, 1, S, S) probability output, read with OpenCV's dnn module. The network is a
fixed 1x1 convolution that fires on bright pixels, so the test controls what it "detects"; the real
networks (DB_TD500, PP-OCRv3) have the same input and output layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowstudio.errors import InputError

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


def write_bright_detector(path: Path, size: int = 64) -> Path:
    """A (1, 3, S, S) -> (1, 1, S, S) network: probability ~1 where the normalised mean is above 0.35."""
    conv = torch.nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(40.0 / 3.0)
        conv.bias.fill_(-40.0 * 0.35)
    model = torch.nn.Sequential(conv, torch.nn.Sigmoid()).eval()
    torch.onnx.export(
        model,
        torch.zeros(1, 3, size, size),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=["maps"],
    )
    return path


def clips(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    clean = rng.integers(40, 110, (9, size, size, 3)).astype(np.uint8)
    captioned = clean.copy()
    for x in range(8, 56, 8):  # a line of white "letters" at the bottom, in every frame
        captioned[:, 50:58, x : x + 5] = 255
    return clean, captioned


def test_text_is_found_only_where_the_network_fires(tmp_path: Path) -> None:
    from flowstudio.data.text import TextDetector

    detector = TextDetector(write_bright_detector(tmp_path / "db.onnx"), input_size=64, min_area=0.001)
    clean, captioned = clips()
    assert detector.probability(clean[0]).shape == (64, 64)
    assert detector.regions(clean[0]) == 0 and detector.text_frames(clean) == 0.0
    assert detector.regions(captioned[0]) == 6 and detector.text_frames(captioned) == 1.0
    half = captioned.copy()
    half[5:] = clean[5:]  # the caption leaves after frame 4: 2 of the 4 sampled frames (0, 3, 5, 8)
    assert detector.text_frames(half) == 0.5
    tiny = TextDetector(tmp_path / "db.onnx", input_size=64, min_area=0.05)  # regions smaller than 5%
    assert tiny.regions(captioned[0]) == 0


def test_the_filter_drops_captioned_clips_in_a_build(tmp_path: Path) -> None:
    pytest.importorskip("scenedetect")
    from flowstudio.data.build import build
    from flowstudio.data.config import BuildConfig
    from flowstudio.video import write_video
    from flowstudio.worlds.shapes import random_spec, render_clip

    model = write_bright_detector(tmp_path / "db.onnx")
    videos = tmp_path / "in"
    videos.mkdir()
    clip = render_clip(random_spec(np.random.default_rng(3)), 33, 128, 128)
    clip = (clip * 0.4).astype(np.uint8)  # dark, so that only the caption is bright
    write_video(videos / "plain.mp4", clip, 16.0, crf=12)
    captioned = clip.copy()
    for x in range(16, 112, 14):
        captioned[:, 104:116, x : x + 8] = 255
    write_video(videos / "captioned.mp4", captioned, 16.0, crf=12)
    for name in ("plain", "captioned"):
        (videos / f"{name}.txt").write_text("a product")
    config = BuildConfig(pairs=False, text_model=str(model), text_input_size=128, windows_per_shot=1)
    sheet = build(videos, tmp_path / "out", config, progress=False)
    assert sheet["clips_dropped"] == {"filters/burnt_in_text": 1} and sheet["clips_kept"] == 1
    assert "checked with" in (tmp_path / "out" / "datasheet.md").read_text()
    unchecked = build(videos, tmp_path / "out2", BuildConfig(pairs=False, windows_per_shot=1), progress=False)
    assert unchecked["clips_kept"] == 2
    assert "**not checked**" in (tmp_path / "out2" / "datasheet.md").read_text()


def test_bad_text_models_are_refused(tmp_path: Path) -> None:
    from flowstudio.data.text import TextDetector

    with pytest.raises(InputError, match="not found"):
        TextDetector(tmp_path / "missing.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="exactly one .onnx"):
        TextDetector(tmp_path / "empty")
    with pytest.raises(InputError, match="multiple of 32"):
        TextDetector(tmp_path / "missing.onnx", input_size=100)
    wrong = tmp_path / "wrong.onnx"
    model = torch.nn.Conv2d(3, 2, 1).eval()
    torch.onnx.export(model, torch.zeros(1, 3, 64, 64), str(wrong), dynamo=False)
    with pytest.raises(InputError, match="returns \\(1, 1, S, S\\)"):
        TextDetector(wrong, input_size=64).probability(np.zeros((64, 64, 3), np.uint8))
