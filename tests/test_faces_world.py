"""Tests of the TalkingShapes world: renderer, speech, structure latent, mouth reader, dataset writer."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from flowstudio.errors import InputError
from flowstudio.worlds.faces import (
    KEYPOINT_NAMES,
    NUM_KEYPOINTS,
    FaceIdentity,
    FaceMotion,
    StructureLatent,
    mouth_interior_mask,
    project_keypoints,
    project_points,
    random_identity,
    read_mouth_opening,
    render_frames,
    render_talking_clip,
    structure_array,
    structure_from_motion,
)
from flowstudio.worlds.faces_audio import SpeechSpec, espeak_available, synthesize_speech
from flowstudio.worlds.faces_dataset import make_faces_dataset, read_clip_arrays


def _lagged_corr(mouth: np.ndarray, loudness: np.ndarray, lag: int) -> float:
    """Correlation of ``mouth[t]`` with ``loudness[t - lag]``."""
    if lag > 0:
        mouth, loudness = mouth[lag:], loudness[:-lag]
    elif lag < 0:
        mouth, loudness = mouth[:lag], loudness[-lag:]
    return float(np.corrcoef(mouth, loudness)[0, 1])


def test_render_is_deterministic_and_seeded() -> None:
    identity, speech = FaceIdentity(seed=3, hair_style="long"), SpeechSpec(seed=4)
    a = render_talking_clip(identity, speech, seconds=1.0, height=64, width=64)
    b = render_talking_clip(identity, speech, seconds=1.0, height=64, width=64)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.structure.to_array(), b.structure.to_array())
    c = render_talking_clip(identity, SpeechSpec(seed=5), seconds=1.0, height=64, width=64)
    assert not np.array_equal(a.audio, c.audio)
    assert not np.array_equal(a.frames, c.frames)
    assert random_identity(np.random.default_rng(7)) == random_identity(np.random.default_rng(7))


def test_shapes_and_dtypes() -> None:
    clip = render_talking_clip(FaceIdentity(), SpeechSpec(seed=1), seconds=2.0, height=64, width=96)
    assert clip.frames.shape == (50, 64, 96, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (32000,) and clip.audio.dtype == np.float32
    assert clip.sample_rate == 16000 and clip.fps == 25.0
    assert np.abs(clip.audio).max() <= 1.0
    array = clip.structure.to_array()
    assert array.shape == (50, 7 + 3 * NUM_KEYPOINTS) == (50, 70) and array.dtype == np.float32
    for values in (clip.mouth_opening, clip.loudness, clip.blink):
        assert values.shape == (50,) and values.dtype == np.float32
    assert clip.viseme.shape == (50,) and clip.viseme.dtype == np.int8
    assert clip.mouth_opening.min() >= 0.0 and clip.mouth_opening.max() <= 1.0
    assert clip.mouth_opening.max() > 0.3  # it speaks
    assert len(KEYPOINT_NAMES) == NUM_KEYPOINTS == 21


def test_structure_layout_round_trip() -> None:
    clip = render_talking_clip(FaceIdentity(seed=2), SpeechSpec(seed=2), seconds=1.0, height=64, width=64)
    latent = clip.structure
    array = latent.to_array()
    np.testing.assert_array_equal(array[:, 0], clip.motion.yaw)
    np.testing.assert_array_equal(array[:, 1], clip.motion.pitch)
    np.testing.assert_array_equal(array[:, 6], clip.motion.scale)
    back = StructureLatent.from_array(array)
    np.testing.assert_array_equal(back.to_array(), array)
    assert back.names == KEYPOINT_NAMES
    # the toy DualForce config uses 5 keypoints (22 channels): nose tip, lips, eyes
    from flowstudio.avatar.model.config import mova_lite_config, toy_config

    small = structure_array(latent, toy_config().structure)
    assert small.shape == (25, toy_config().structure.channels) == (25, 22)
    upper = KEYPOINT_NAMES.index("upper_lip")
    np.testing.assert_array_equal(small[:, 7 + 3 : 7 + 6], latent.keypoints[:, upper])
    assert StructureLatent.from_array(small).names[:3] == ("nose_tip", "upper_lip", "lower_lip")
    assert structure_array(latent, mova_lite_config().structure).shape == (25, 70)
    with pytest.raises(InputError, match="7 \\+ 3K"):
        StructureLatent.from_array(np.zeros((4, 9), np.float32))
    with pytest.raises(InputError, match="99"):
        structure_array(latent, 99)


def test_mouth_follows_loudness_with_the_latency() -> None:
    for latency, expected_lag in ((0.04, 1), (0.0, 0), (0.12, 3)):
        clip = render_talking_clip(
            FaceIdentity(seed=1), SpeechSpec(seed=9), seconds=6.0, height=32, width=32, mouth_latency=latency
        )
        speech = np.flatnonzero(clip.loudness > 0.05)
        span = slice(int(speech.min()), int(speech.max()) + 1)
        mouth, loudness = clip.mouth_opening[span], clip.loudness[span]
        correlations = {lag: _lagged_corr(mouth, loudness, lag) for lag in range(-4, 5)}
        assert max(correlations, key=correlations.__getitem__) == expected_lag, correlations
        assert correlations[expected_lag] >= 0.6, correlations


def test_read_mouth_opening_matches_ground_truth() -> None:
    for index in range(4):
        identity = random_identity(np.random.default_rng([11, index]))
        clip = render_talking_clip(identity, SpeechSpec(seed=index), seconds=3.0)
        read = read_mouth_opening(clip.frames)
        assert read.shape == (75,) and read.dtype == np.float32
        corr = float(np.corrcoef(read, clip.mouth_opening)[0, 1])
        assert corr >= 0.9, (index, identity, corr)
        closed, wide = clip.mouth_opening < 0.01, clip.mouth_opening > 0.6
        assert read[closed].max(initial=0.0) < 0.25 * read[wide].mean()  # a closed mouth reads ~0
    with pytest.raises(InputError):
        read_mouth_opening(np.zeros((2, 8, 8), np.uint8))


def test_head_pose_moves_keypoints_consistently_with_the_projection() -> None:
    identity = FaceIdentity(seed=0)
    sweep = np.linspace(-0.4, 0.4, 5)
    nose = KEYPOINT_NAMES.index("nose_tip")
    left_eye = KEYPOINT_NAMES.index("left_eye")
    for field, axis, sign in (("yaw", 0, 1), ("pitch", 1, 1)):
        motion = FaceMotion.still(5, identity, **{field: sweep}, mouth=0.8)
        latent = structure_from_motion(identity, motion)
        points = project_keypoints(latent, 128, 128)
        steps = np.diff(points[:, nose, axis])
        assert np.all(sign * steps > 0.5), (field, points[:, nose])  # yaw: nose right, pitch: nose down
        # canonical keypoints do not depend on the pose; only the projection moves
        np.testing.assert_allclose(latent.keypoints, latent.keypoints[:1].repeat(5, 0), atol=1e-6)
    roll = structure_from_motion(identity, FaceMotion.still(5, identity, roll=sweep))
    eye_y = project_keypoints(roll)[:, left_eye, 1]
    assert np.all(np.diff(eye_y) < 0)  # clockwise roll lifts the image-left eye

    # the projection of the posed keypoints is what is drawn: the open mouth sits between the lips
    rng = np.random.default_rng(0)
    motion = FaceMotion.still(
        6,
        identity,
        yaw=rng.uniform(-0.4, 0.4, 6),
        pitch=rng.uniform(-0.25, 0.25, 6),
        roll=rng.uniform(-0.2, 0.2, 6),
        tx=rng.uniform(-0.1, 0.1, 6),
        scale=rng.uniform(0.9, 1.1, 6),
        mouth=0.9,
    )
    frames = render_frames(identity, motion, 128, 128)
    latent = structure_from_motion(identity, motion)
    points = project_keypoints(latent, 128, 128)
    manual = project_points(latent.posed_keypoints(), 128, 128)
    np.testing.assert_allclose(points, manual)
    lips = points[:, [KEYPOINT_NAMES.index("upper_lip"), KEYPOINT_NAMES.index("lower_lip")]].mean(axis=1)
    mask = mouth_interior_mask(frames)
    ys, xs = np.mgrid[0:128, 0:128]
    centroid = np.stack([(mask * xs).sum((1, 2)), (mask * ys).sum((1, 2))], 1) / mask.sum((1, 2))[:, None]
    np.testing.assert_allclose(centroid, lips, atol=2.0)


def test_invalid_sizes_raise_input_error_naming_the_value(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(InputError, match="100"):
        render_talking_clip(FaceIdentity(), SpeechSpec(), seconds=1.0, height=100)
    with pytest.raises(InputError, match="48"):
        make_faces_dataset(tmp_path, 1, width=48)
    with pytest.raises(InputError, match="0.01"):
        render_talking_clip(FaceIdentity(), SpeechSpec(), seconds=0.01)
    with pytest.raises(InputError, match="hair_style"):
        FaceIdentity(hair_style="mohawk")
    with pytest.raises(InputError, match="pitch"):
        SpeechSpec(pitch=1000.0)


def test_speech_is_deterministic_and_has_pauses() -> None:
    a = synthesize_speech(SpeechSpec(seed=5), 3.0)
    b = synthesize_speech(SpeechSpec(seed=5), 3.0)
    np.testing.assert_array_equal(a.waveform, b.waveform)
    assert a.waveform.shape == (48000,) and a.syllables
    silent = a.envelope == 0
    assert 0.1 < silent.mean() < 0.8  # phrases and pauses


@pytest.mark.skipif(not espeak_available(), reason="espeak-ng binary not installed (optional TTS engine)")
def test_espeak_engine() -> None:
    clip = render_talking_clip(
        FaceIdentity(), SpeechSpec(engine="espeak", text="hello world"), seconds=2.0, height=64, width=64
    )
    assert clip.audio.shape == (32000,) and clip.mouth_opening.max() > 0.2


def test_espeak_absent_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("flowstudio.worlds.faces_audio.shutil.which", lambda name: None)
    with pytest.raises(InputError, match="espeak-ng is not installed"):
        synthesize_speech(SpeechSpec(engine="espeak"), 1.0)


def test_dataset_writer_audio_and_resume(tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "faces"
    manifest = make_faces_dataset(out, 2, seed=1, seconds=2.0, workers=1, progress=False)
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1]
    record = records[0]
    assert record["fps"] == 25.0 and record["num_frames"] == 50 and record["sample_rate"] == 16000
    FaceIdentity.from_dict(record["identity"]), SpeechSpec.from_dict(record["speech"])
    arrays = read_clip_arrays(out / record["arrays"])
    assert arrays["structure"].shape == (50, 70) and arrays["structure"].dtype == np.float32
    assert arrays["mouth_opening"].shape == arrays["loudness"].shape == (50,)
    assert arrays["audio"].shape == (32000,)
    with av.open(str(out / record["video"])) as container:
        assert container.streams.audio and container.streams.video
        audio = container.streams.audio[0]
        seconds = float(audio.duration * audio.time_base)
        assert abs(seconds - 2.0) < 0.1, seconds
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert frames.shape == (50, 128, 128, 3)
    corr = float(np.corrcoef(read_mouth_opening(frames), arrays["mouth_opening"])[0, 1])
    assert corr >= 0.85, corr  # after H.264

    # resume: complete clips are kept, a broken one is redone
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / records[1]["arrays"]).unlink()
    make_faces_dataset(out, 2, seed=1, seconds=2.0, workers=1, progress=False)
    assert (out / record["video"]).stat().st_mtime_ns == stamps[record["video"]]
    assert (out / records[1]["arrays"]).exists()
    assert [json.loads(line) for line in manifest.read_text().splitlines()] == records


def test_dataset_workers_give_the_same_clips(tmp_path) -> None:  # noqa: ANN001
    make_faces_dataset(tmp_path / "a", 2, seed=3, seconds=0.5, height=64, width=64, workers=1, progress=False)
    make_faces_dataset(tmp_path / "b", 2, seed=3, seconds=0.5, height=64, width=64, workers=2, progress=False)
    for index in range(2):
        a = read_clip_arrays(tmp_path / "a" / f"clip_{index:05d}.npz")
        b = read_clip_arrays(tmp_path / "b" / f"clip_{index:05d}.npz")
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_make_faces_command(tmp_path) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from flowstudio.worlds.cli import worlds_app

    result = CliRunner().invoke(
        worlds_app,
        [
            "make",
            "faces",
            str(tmp_path),
            "--clips",
            "1",
            "--seconds",
            "0.5",
            "--height",
            "64",
            "--width",
            "64",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "clip_00000.mp4").exists() and (tmp_path / "manifest.jsonl").exists()
