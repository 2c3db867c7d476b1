"""`flowstudio avatar preprocess`: end to end on TalkingShapes mp4s, resume, adapters, splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flowstudio.avatar.preprocess import PreprocessConfig, preprocess
from flowstudio.avatar.preprocess.liveportrait import MOTION_FILE, ConvNeXtV2Motion, LivePortraitMotion
from flowstudio.avatar.preprocess.manifest import assign_splits
from flowstudio.avatar.preprocess.sync import SyncNetWeights
from flowstudio.errors import CheckpointError, InputError
from flowstudio.video import read_video, write_video
from flowstudio.worlds.faces_dataset import make_faces_dataset, read_clip_arrays

CONFIG = PreprocessConfig(detector="talkingshapes", structure="talkingshapes")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 good clips, a corrupt file, a clip without audio, two clips concatenated (a shot cut),
    and a clip whose audio runs 4 frames early."""
    root = tmp_path_factory.mktemp("talkingshapes")
    make_faces_dataset(root, 6, seed=0, seconds=2.0, workers=1, progress=False)
    (root / "manifest.jsonl").unlink()
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    clip = read_video(root / "clip_00004.mp4")
    write_video(root / "silent.mp4", clip.frames, 25.0)  # no audio stream
    a, b = read_clip_arrays(root / "clip_00004.npz"), read_clip_arrays(root / "clip_00005.npz")
    other = read_video(root / "clip_00005.mp4")
    frames = np.concatenate([clip.frames, other.frames])
    write_video(
        root / "cut.mp4", frames, 25.0, audio=np.concatenate([a["audio"], b["audio"]]), audio_rate=16000
    )
    np.savez(root / "cut.npz", structure=np.concatenate([a["structure"], b["structure"]]))
    for stem in ("clip_00004", "clip_00005"):
        for suffix in (".mp4", ".npz", ".json"):
            (root / f"{stem}{suffix}").unlink()
    # clip 3 with its audio 4 frames (160 ms) early: the mouth then follows the sound by 1 + 4 frames
    three = read_clip_arrays(root / "clip_00003.npz")
    early = np.concatenate([three["audio"][4 * 640 :], np.zeros(4 * 640, np.float32)])
    write_video(root / "clip_00003.mp4", read_video(root / "clip_00003.mp4").frames, 25.0,
                audio=early, audio_rate=16000)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def result(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("out")
    return out, preprocess(folder, out, CONFIG, progress=False)


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_end_to_end_counts_and_outputs(result: tuple[Path, dict]) -> None:
    out, report = result
    assert report["inputs"] == 7
    assert report["clips_refused"] == {"probe/no_audio": 1, "probe/unreadable": 1}
    assert report["shots"] == 6  # 4 clips + the concatenated one's 2 shots
    rows = _manifest(out)
    assert len(rows) == report["segments_kept"] == 6
    cut = sorted((r for r in rows if r["clip_id"] == "cut"), key=lambda r: r["start_frame"])
    assert [r["start_frame"] for r in cut] == [0, 50]  # split at the cut, each shot its own segment
    for row in rows:
        clip = read_video(out / row["video"], with_audio=True)
        assert clip.frames.shape[1:] == (128, 128, 3) and clip.fps == 25.0
        assert clip.num_frames == row["num_frames"] and row["num_frames"] % 4 == 0
        assert clip.audio_rate == 16000 and clip.audio.shape[0] == 1
        with np.load(out / row["arrays"]) as arrays:
            assert arrays["audio"].shape == (row["num_frames"] * 640,)
            assert arrays["audio_features"].shape == (row["num_frames"] * 2, 80)
            assert arrays["structure"].shape == (row["num_frames"], 70)
            assert arrays["latents"].shape == (12, row["num_frames"] // 4, 32, 32)


def test_sync_offsets(result: tuple[Path, dict]) -> None:
    out, _ = result
    rows = {r["clip_id"]: r for r in _manifest(out)}
    for clip_id in ("clip_00000", "clip_00001", "clip_00002"):
        # the world's mouth follows its sound by one frame: inside the tolerance, left alone
        assert rows[clip_id]["sync"]["offset_frames"] == 1 and rows[clip_id]["sync"]["shift_frames"] == 0
    shifted = rows["clip_00003"]["sync"]
    assert shifted["offset_frames"] in (4, 5, 6) and shifted["shift_frames"] == shifted["offset_frames"]
    assert rows["clip_00003"]["start_frame"] == shifted["shift_frames"]
    with np.load(out / rows["clip_00003"]["arrays"]) as arrays:
        # after the trim the mouth follows the loudness again within a frame
        m, a = arrays["mouth"], arrays["loudness"]
    lags = range(-3, 4)
    corr = [
        np.corrcoef(m[max(k, 0) : len(m) + min(k, 0)], a[max(-k, 0) : len(a) - max(k, 0)])[0, 1] for k in lags
    ]
    assert abs(list(lags)[int(np.argmax(corr))]) <= 1


def test_identity_splits_disjoint(result: tuple[Path, dict]) -> None:
    out, _ = result
    rows = _manifest(out)
    split_of: dict[str, set[str]] = {}
    for row in rows:
        split_of.setdefault(row["identity"], set()).add(row["split"])
    assert all(len(s) == 1 for s in split_of.values())
    assert {r["split"] for r in rows} == {"train", "val", "test"}


def test_resume_skips_and_redoes_interrupted_clip(folder: Path, result: tuple[Path, dict]) -> None:
    out, _ = result
    before = (out / "manifest.jsonl").read_bytes()
    videos = {p: p.read_bytes() for p in sorted((out / "clips").rglob("*.mp4"))}
    report = preprocess(folder, out, CONFIG, progress=False)
    assert report["timing"]["processed"] == 0 and report["timing"]["skipped_done"] == 7
    # an interrupted clip: no done-record, a half-written file left behind
    (out / "done" / "clip_00001.json").unlink()
    next((out / "clips" / "clip_00001").glob("*.mp4")).write_bytes(b"partial")
    report = preprocess(folder, out, CONFIG, progress=False)
    assert report["timing"]["processed"] == 1
    assert (out / "manifest.jsonl").read_bytes() == before
    assert {p: p.read_bytes() for p in sorted((out / "clips").rglob("*.mp4"))} == videos


def test_weak_sync_is_refused(tmp_path: Path) -> None:
    # swap in another clip's speech: the mouth no longer follows the sound (4 s: at 2 s chance
    # correlations over 17 lags reach the threshold)
    src = tmp_path / "in"
    make_faces_dataset(src, 2, seed=3, seconds=4.0, workers=1, progress=False)
    (src / "manifest.jsonl").unlink()
    other = read_clip_arrays(src / "clip_00001.npz")["audio"]
    (src / "clip_00001.mp4").unlink()
    write_video(src / "clip_00000.mp4", read_video(src / "clip_00000.mp4").frames, 25.0,
                audio=other, audio_rate=16000)  # fmt: skip
    report = preprocess(src, tmp_path / "out", CONFIG, progress=False)
    assert report["segments_kept"] == 0 and report["segments_dropped"] == {"sync/too_weak": 1}


def test_talkingshapes_detector_refuses_other_videos(folder: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "person.mp4").write_bytes((folder / "clip_00000.mp4").read_bytes())  # no ground truth beside it
    report = preprocess(src, tmp_path / "out", CONFIG, progress=False)
    assert report["clips_refused"] == {"error/InputError": 1}


def test_assign_splits_is_by_identity_and_deterministic() -> None:
    ids = [f"person{i}" for i in range(20)]
    first = assign_splits(ids, (0.1, 0.1), seed=0)
    assert first == assign_splits(list(reversed(ids)), (0.1, 0.1), seed=0)
    assert sorted(first.values()).count("val") == 2 and sorted(first.values()).count("test") == 2


def _tiny_liveportrait(root: Path) -> ConvNeXtV2Motion:
    torch.manual_seed(0)
    model = ConvNeXtV2Motion(depths=[1, 1, 2, 1], dims=[8, 16, 16, 16], num_kp=21, num_bins=66)
    (root / MOTION_FILE).parent.mkdir(parents=True)
    torch.save(model.state_dict(), root / MOTION_FILE)
    return model


def test_liveportrait_tiny_checkpoint_real_layout(tmp_path: Path) -> None:
    model = _tiny_liveportrait(tmp_path)
    keys = set(model.state_dict())
    # LivePortrait's MotionExtractor names (src/modules/convnextv2.py under .detector)
    assert {"detector.downsample_layers.0.0.weight", "detector.stages.2.1.grn.gamma",
            "detector.fc_exp.weight",
            "detector.downsample_layers.1.0.weight", "detector.norm.weight"} <= keys  # fmt: skip
    motion = LivePortraitMotion(tmp_path)
    assert motion.architecture == {
        "depths": [1, 1, 2, 1],
        "dims": [8, 16, 16, 16],
        "num_kp": 21,
        "num_bins": 66,
    }
    frames = np.random.default_rng(0).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    out = motion(frames)
    assert out["structure"].shape == (3, 7 + 63) and out["kp"].shape == (3, 21, 3)
    assert np.all(np.abs(out["yaw"]) <= 97.5)
    x = torch.nn.functional.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255, size=256,
                                        mode="bilinear", align_corners=False)  # fmt: skip
    with torch.no_grad():
        kp = model(x)["kp"].reshape(3, 21, 3).numpy()
    np.testing.assert_allclose(out["kp"], kp, rtol=1e-5, atol=1e-5)


def test_liveportrait_missing_or_wrong_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="motion_extractor.pth"):
        LivePortraitMotion(tmp_path)
    (tmp_path / MOTION_FILE).parent.mkdir(parents=True)
    torch.save({"something.weight": torch.zeros(2)}, tmp_path / MOTION_FILE)
    with pytest.raises(CheckpointError, match="not LivePortrait's motion extractor"):
        LivePortraitMotion(tmp_path)


def test_syncnet_adapter_checks_layout_and_says_not_implemented(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="syncnet_v2.model"):
        SyncNetWeights(tmp_path)
    torch.save({f"{p}0.weight": torch.zeros(1) for p in ("netcnnaud.", "netfcaud.", "netcnnlip.")},
               tmp_path / "syncnet_v2.model")  # fmt: skip
    with pytest.raises(CheckpointError, match="netfclip"):
        SyncNetWeights(tmp_path)
    names = ("netcnnaud.", "netfcaud.", "netcnnlip.", "netfclip.")
    torch.save({f"{p}0.weight": torch.zeros(1) for p in names},
               tmp_path / "syncnet_v2.model")  # fmt: skip
    with pytest.raises(NotImplementedError, match="not implement"):
        SyncNetWeights(tmp_path).evaluate()


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(InputError, match="hubert"):
        PreprocessConfig(audio_features="hubert")
    with pytest.raises(InputError, match="detector"):
        PreprocessConfig(detector="haar")


@pytest.mark.skipif(
    pytest.importorskip.__module__ is None or __import__("importlib").util.find_spec("mediapipe") is None,
    reason="mediapipe (the face extra) is not installed",
)
def test_mediapipe_detector_on_toy_faces(folder: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for suffix in (".mp4", ".npz", ".json"):
        (src / f"clip_00000{suffix}").write_bytes((folder / f"clip_00000{suffix}").read_bytes())
    config = PreprocessConfig(detector="mediapipe", structure="talkingshapes")
    report = preprocess(src, tmp_path / "out", config, progress=False)
    assert report["segments_kept"] == 1
    row = _manifest(tmp_path / "out")[0]
    assert row["sources"]["detector"] == "mediapipe" and abs(row["sync"]["offset_frames"]) <= 1


def test_cli_runs_and_reports(folder: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flowstudio.avatar.cli import avatar_app

    src = tmp_path / "in"
    src.mkdir()
    for suffix in (".mp4", ".npz", ".json"):
        (src / f"clip_00000{suffix}").write_bytes((folder / f"clip_00000{suffix}").read_bytes())
    args = ["preprocess", str(src), str(tmp_path / "out"), "--detector", "talkingshapes",
            "--structure", "talkingshapes"]  # fmt: skip
    result = CliRunner().invoke(avatar_app, args)
    assert result.exit_code == 0, result.output
    assert "segments kept: 1" in result.output
    bad = CliRunner().invoke(avatar_app, ["preprocess", str(src), str(tmp_path / "o2"), "--detector", "haar"])
    assert bad.exit_code == 2 and "detector must be one of" in bad.output


def test_hubert_tiny_checkpoint_real_layout(folder: Path, tmp_path: Path) -> None:
    # facebook/hubert-large-ll60k's layout (config.json + model.safetensors), tiny and random
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    config = HubertConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    HubertModel(config).save_pretrained(tmp_path / "hubert")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "hubert").iterdir()}
    src = tmp_path / "in"
    src.mkdir()
    for suffix in (".mp4", ".npz", ".json"):
        (src / f"clip_00000{suffix}").write_bytes((folder / f"clip_00000{suffix}").read_bytes())
    settings = PreprocessConfig(
        detector="talkingshapes", audio_features="hubert", hubert_path=str(tmp_path / "hubert")
    )
    report = preprocess(src, tmp_path / "out", settings, progress=False)
    row = _manifest(tmp_path / "out")[0]
    assert report["segments_kept"] == 1 and row["sources"]["audio_features"] == "hubert"
    with np.load(tmp_path / "out" / row["arrays"]) as arrays:
        assert arrays["audio_features"].shape == (row["num_frames"] * 2, 16)  # 50 Hz, hidden size 16
        assert "structure" not in arrays.files  # --structure none writes none
    with pytest.raises(CheckpointError, match="config.json"):
        bad = PreprocessConfig(detector="talkingshapes", audio_features="hubert", hubert_path=str(tmp_path))
        preprocess(src, tmp_path / "o2", bad, progress=False)


@pytest.mark.parametrize("lag", [-3, 0, 4])
def test_offset_estimate_and_trim_both_directions(lag: int) -> None:
    from flowstudio.avatar.preprocess import sync

    rng = np.random.default_rng(lag + 10)
    sound = np.convolve(rng.random(140), np.ones(3) / 3, mode="same")
    mouth = np.roll(sound, lag)[10:130]  # mouth[t] = sound[t - lag]
    sound = sound[10:130]
    found = sync.estimate_offset(mouth, sound, 6, "synthetic")
    assert found.offset == lag and found.confidence > 0.9
    audio = np.repeat(sound, 4)  # 4 samples per frame
    (a, b), trimmed = sync.apply_correction((0, len(mouth)), audio, found.offset, 4)
    assert b - a == len(trimmed) // 4 == len(mouth) - abs(lag)
    np.testing.assert_allclose(mouth[a:b], trimmed[::4])  # after the trim they line up frame by frame
