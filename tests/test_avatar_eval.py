"""Talking-head evaluation on TalkingShapes: lip-sync, structure, identity, Fréchet, reference skips, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flowstudio.avatar.cli import avatar_app
from flowstudio.avatar.evaluation.evaluate import ClipTruth, EvalClip, evaluate_clip, evaluate_set
from flowstudio.avatar.evaluation.features import (
    FEATURE_DIM,
    frechet_video_distance,
    load_feature_extractor,
    missing_reason,
    train_feature_extractor,
)
from flowstudio.avatar.evaluation.metrics import (
    best_lag,
    identity_distance,
    identity_drift,
    lip_sync,
    lip_sync_from_clip,
    loudness_envelope,
    pose_plausibility,
    structure_error,
    wasserstein_1d,
)
from flowstudio.bench.metrics import registry as bench_registry
from flowstudio.bench.metrics.reference import ReferenceScorer
from flowstudio.errors import InputError
from flowstudio.metrics import for_suite, get
from flowstudio.metrics.scoring import unavailable
from flowstudio.worlds.faces import (
    FaceIdentity,
    FaceMotion,
    read_mouth_opening,
    render_frames,
    render_talking_clip,
    structure_array,
)
from flowstudio.worlds.faces_dataset import clip_identity_speech, make_faces_dataset

HELD_OUT = 1000  # a TalkingShapes seed no training uses


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _no_user_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Reference-tier lookups never see the user's weights."""
    for spec in bench_registry.WEIGHTS.values():
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.delenv(bench_registry.CONFIG_ENV, raising=False)
    monkeypatch.setenv(bench_registry.ROOT_ENV, str(tmp_path / "no-weights-here"))


@pytest.fixture(scope="module")
def clips():
    """Six held-out 4 s clips at 64 x 64."""
    return [
        render_talking_clip(*clip_identity_speech(HELD_OUT, i), seconds=4.0, height=64, width=64)
        for i in range(6)
    ]


def _sync(frames, audio, fps=25.0):
    return lip_sync_from_clip(frames, audio, 16000, fps)


# ------------------------------------------------------------------------------------------------
# Lip-sync


def test_loudness_envelope_is_the_worlds_loudness(clips):
    clip = clips[0]
    ours = loudness_envelope(clip.audio, clip.sample_rate, len(clip.frames), clip.fps, window=0.04)
    np.testing.assert_allclose(ours, clip.loudness, rtol=1e-5, atol=1e-7)


def test_ground_truth_lip_sync_is_high_and_mouth_follows_by_one_frame(clips):
    results = [_sync(c.frames, c.audio) for c in clips]
    offsets = [r.offset for r in results]
    assert offsets.count(1) >= 5, offsets  # the world's MOUTH_LATENCY: one frame at 25 fps
    lag, corr = best_lag([r.curve for r in results])
    assert lag == 1 and corr > 0.45
    assert np.mean([r.corr for r in results]) > 0.5
    assert np.mean([r.corr for r in results]) > np.mean([r.corr_at_0 for r in results]) + 0.2


def test_mismatched_audio_scores_low(clips):
    truth = [_sync(c.frames, c.audio) for c in clips]
    wrong = [_sync(c.frames, clips[(i + 1) % len(clips)].audio) for i, c in enumerate(clips)]
    assert np.mean([r.corr for r in wrong]) < np.mean([r.corr for r in truth]) - 0.2
    assert np.mean([r.conf for r in wrong]) < np.mean([r.conf for r in truth]) - 0.2
    assert [r.offset for r in wrong].count(1) <= 2
    lag, corr = best_lag([r.curve for r in wrong])
    assert corr < 0.25


def test_lip_sync_offset_sign_follows_a_delay(clips):
    clip = clips[3]
    delayed = np.concatenate([np.repeat(clip.frames[:1], 2, axis=0), clip.frames[:-2]])  # video 2 frames late
    assert _sync(delayed, clip.audio).offset == 3
    early = np.concatenate([clip.frames[1:], clip.frames[-1:]])  # video 1 frame early: in sync at lag 0
    assert _sync(early, clip.audio).offset == 0


def test_static_mouth_and_silence(clips):
    clip = clips[0]
    frozen = np.repeat(clip.frames[:1], len(clip.frames), axis=0)
    result = _sync(frozen, clip.audio)
    assert result.corr == 0.0 and result.conf == 0.0
    assert lip_sync(read_mouth_opening(clip.frames), np.zeros(len(clip.frames))) is None
    with pytest.raises(InputError, match="one value per frame"):
        lip_sync(np.zeros(5), np.ones(6))


# ------------------------------------------------------------------------------------------------
# Structure and pose


def test_structure_error_and_pose_plausibility(clips):
    clip = clips[0]
    truth = clip.structure.to_array()  # 21 keypoints
    generated = structure_array(clip.structure, 5)  # the toy DualForce's layout
    assert structure_error(generated, truth) == {"pose": 0.0, "translation_scale": 0.0, "keypoints": 0.0}
    frozen = np.repeat(generated[:1], len(generated), axis=0)
    errors = structure_error(frozen, truth)
    assert errors["pose"] > 0.01 and errors["translation_scale"] > 0.005
    exact = pose_plausibility(generated, truth)
    assert exact["pose_in_limits"] == 1.0 and exact["pose_velocity_w1"] == 0.0
    assert pose_plausibility(frozen, truth)["pose_velocity_w1"] > 1e-3
    wild = generated.copy()
    wild[::2, 0] = 0.9  # yaw beyond POSE_LIMITS on half the frames
    jitter = pose_plausibility(wild, truth)
    assert jitter["pose_in_limits"] == pytest.approx(0.5)
    assert jitter["pose_velocity_w1_yaw"] > 0.3
    with pytest.raises(InputError, match="structure latent"):
        structure_error(np.zeros((4, 9)), truth)


def test_wasserstein_1d():
    rng = np.random.default_rng(0)
    a = rng.normal(size=500)
    assert wasserstein_1d(a, a) == 0.0
    assert wasserstein_1d(a, a + 0.3) == pytest.approx(0.3)
    assert wasserstein_1d([0.0, 1.0], [0.0, 0.0, 1.0, 1.0, 1.0]) == pytest.approx(0.1)


# ------------------------------------------------------------------------------------------------
# Identity


def _poses(identity: FaceIdentity) -> np.ndarray:
    motion = FaceMotion.still(
        5,
        identity,
        yaw=np.array([0.0, 0.5, -0.5, 0.0, 0.2]),
        pitch=np.array([0.0, 0.0, 0.1, 0.3, -0.3]),
        roll=np.array([0.0, 0.1, -0.2, 0.0, 0.25]),
        mouth=np.array([0.0, 1.0, 0.5, 0.8, 0.0]),
        blink=np.array([0.0, 0.0, 1.0, 0.0, 0.5]),
    )
    return render_frames(identity, motion, 64, 64)


def test_identity_distance_small_within_and_large_across_identities():
    people = [
        FaceIdentity(skin="light", hair_color="brown", hair_style="short", background_color="sky"),
        FaceIdentity(
            skin="dark", hair_color="blond", hair_style="long", background_color="mint", face_shape="square"
        ),
        FaceIdentity(
            skin="tan", hair_color="black", hair_style="bald", background_color="lilac", shirt="navy"
        ),
        FaceIdentity(skin="porcelain", hair_color="ginger", hair_style="bob", background_color="sand"),
    ]
    renders = [_poses(p) for p in people]
    within = [identity_distance(r[0], f) for r in renders for f in r[1:]]
    across = [identity_distance(a[0], b[0]) for i, a in enumerate(renders) for b in renders[i + 1 :]]
    assert identity_distance(renders[0][0], renders[0][0]) == pytest.approx(0.0, abs=1e-4)
    assert max(within) < 9.0, within
    assert min(across) > 15.0, across
    assert identity_distance(renders[0][0], renders[1][0]) == pytest.approx(
        identity_distance(renders[1][0], renders[0][0]), rel=1e-4
    )


def test_identity_drift_uses_the_last_frames_of_a_short_clip(clips):
    clip = clips[0]
    drift = identity_drift(clip.frames[0], clip.frames, clip.fps)
    assert drift[10.0][1] == drift[30.0][1] == pytest.approx(3.96)
    assert drift[30.0][0] < 9.0
    other = identity_drift(clips[1].frames[0], clip.frames, clip.fps)
    assert other[30.0][0] > 2 * drift[30.0][0]


# ------------------------------------------------------------------------------------------------
# Per-clip and set drivers


def test_evaluate_clip_separates_truth_mismatch_and_static(clips):
    clip = clips[4]
    truth = ClipTruth(frames=clip.frames, structure=clip.structure.to_array())
    gen_struct = structure_array(clip.structure, 5)
    ok = evaluate_clip(clip.frames, clip.audio, 16000, 25.0, clip.frames[0], truth, gen_struct)["metrics"]
    assert "structure_err_pose" in ok
    assert ok["lip_sync_offset"] == 1 and ok["lip_sync_corr"] > 0.5
    assert ok["structure_err_pose"] == 0.0 and ok["pose_in_limits"] == 1.0
    assert ok["identity_ratio_30s"] < 1.5 and ok["warp_error"] > 0
    static_frames = np.repeat(clip.frames[:1], len(clip.frames), axis=0)
    scored = evaluate_clip(static_frames, clip.audio, 16000, 25.0, clip.frames[0], truth)
    static = scored["metrics"]
    assert static["lip_sync_corr"] == 0.0 and static["flicker"] == 0.0 and static["warp_error"] == 0.0
    assert static["identity_drift_30s"] == 0.0
    assert "structure_err_pose" not in static
    assert "structure latent" in scored["skipped"]["structure_err_pose"]
    # ground truth at twice the size is resized (INTER_AREA); another aspect ratio is an error
    big = render_talking_clip(*clip_identity_speech(HELD_OUT, 4), seconds=1.0, height=128, width=128)
    resized = evaluate_clip(
        clip.frames[:25], clip.audio[:16000], 16000, 25.0, big.frames[0], ClipTruth(frames=big.frames)
    )
    assert resized["metrics"]["identity_world_p95"] < 9.0
    assert "lip_sync_corr" not in resized["metrics"]  # 1 s: too few speech frames
    assert "speech frames" in resized["skipped"]["lip_sync_corr"]
    wide = np.zeros((25, 64, 96, 3), np.uint8)
    with pytest.raises(InputError, match="aspect"):
        evaluate_clip(clip.frames[:25], clip.audio, 16000, 25.0, clip.frames[0], ClipTruth(frames=wide))


def test_evaluate_set_reports_reference_metrics_as_skipped(clips, tmp_path):
    items = [
        EvalClip(f"c{i}", c.frames, c.audio, 16000, 25.0, c.frames[0], ClipTruth(frames=c.frames))
        for i, c in enumerate(clips[:2])
    ]
    report = evaluate_set(items, features=tmp_path / "none", progress=False)
    summary = report["summary"]
    assert {m.name for m in for_suite("avatar")} <= set(summary)
    assert summary["lip_sync_corr"]["n"] == 2
    assert summary["lip_sync_offset_set"]["value"] == 1
    assert summary["fvd_toy"]["status"] == "skipped"
    assert "no toy feature extractor at" in summary["fvd_toy"]["reason"]
    for name in ("sync_c", "sync_d", "csim", "acd", "apd", "fid", "fvd"):
        assert summary[name]["status"] == "skipped"
        assert "(not available locally)" in summary[name]["reason"]
    assert (
        "syncnet" in summary["sync_c"]["reason"]
        and "FLOWSTUDIO_WEIGHTS_SYNCNET" in summary["sync_c"]["reason"]
    )
    assert summary["structure_err_pose"]["status"] == "skipped"


def test_reference_metric_with_verified_weights_says_scorer_missing(tmp_path, monkeypatch):
    weights = tmp_path / "syncnet"
    weights.mkdir()
    (weights / "syncnet_v2.model").write_bytes(b"not really syncnet")
    from flowstudio.bench.io import sha256_file

    config = {"syncnet": {"path": str(weights), "sha256": sha256_file(weights / "syncnet_v2.model")}}
    reference = ReferenceScorer(config=config)
    assert "not implemented" in unavailable(get("sync_c"), reference)
    assert "not available locally" in unavailable(get("csim"), reference)


# ------------------------------------------------------------------------------------------------
# FVD-style features


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "toy-features"
    train_feature_extractor(
        out, steps=3, num_clips=3, clip_seconds=0.64, batch_size=2, val_clips=1, progress=False
    )
    return out


def test_frechet_distance_properties():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(400, 8))
    assert frechet_video_distance(base, base) == pytest.approx(0.0, abs=1e-6)
    distances = [frechet_video_distance(base, base + shift) for shift in (0.1, 0.3, 1.0)]
    assert 0 < distances[0] < distances[1] < distances[2]
    assert distances[2] == pytest.approx(8.0, rel=1e-6)  # |mu shift|^2, same covariance
    with pytest.raises(InputError, match="at least 2"):
        frechet_video_distance(base[:1], base)


def test_feature_extractor_trains_saves_and_scores(features_dir, clips):
    config = json.loads((features_dir / "config.json").read_text())
    assert config["settings"]["steps"] == 3 and set(config["validation_r2"]) >= {"mouth", "pose", "identity"}
    extractor = load_feature_extractor(features_dir)
    real = [extractor.clip_features(c.frames) for c in clips[:3]]
    assert real[0].shape == (100 // 16, FEATURE_DIM)
    again = load_feature_extractor(features_dir).clip_features(clips[0].frames)
    np.testing.assert_allclose(again, real[0])  # deterministic
    rng = np.random.default_rng(1)

    def noisy(sigma: float) -> list[np.ndarray]:
        return [
            extractor.clip_features(
                np.clip(c.frames + rng.normal(0, sigma, c.frames.shape), 0, 255).astype(np.uint8)
            )
            for c in clips[:3]
        ]

    distances = [frechet_video_distance(real, noisy(sigma)) for sigma in (10, 40, 120)]
    assert 0 < distances[0] < distances[1] < distances[2], distances
    assert frechet_video_distance(real, real) < 1e-3 * distances[0]  # ~0 on this barely trained net's scale
    assert extractor.clip_features(clips[0].frames[:10]).shape == (0, FEATURE_DIM)


def test_feature_extractor_missing_and_broken(tmp_path):
    assert "no toy feature extractor at" in missing_reason(tmp_path / "nothing")
    assert "train-features" in missing_reason(None)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"format": "something else"}))
    (broken / "model.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="not a toy feature extractor"):
        load_feature_extractor(broken)
    with pytest.raises(InputError, match="steps"):
        train_feature_extractor(tmp_path / "x", steps=0)


# ------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("faces") / "held-out"
    make_faces_dataset(out, 2, seed=HELD_OUT, seconds=0.8, height=64, width=64, workers=1, progress=False)
    return out


def test_eval_help():
    result = CliRunner().invoke(avatar_app, ["eval", "--help"])
    assert result.exit_code == 0
    for option in ("--data", "--generated", "--checkpoint", "--features", "--clips", "--out"):
        assert option in result.output
    assert CliRunner().invoke(avatar_app, ["train-features", "--help"]).exit_code == 0


def test_eval_end_to_end_on_the_random_toy_model(dataset, features_dir, tmp_path, monkeypatch):
    from flowstudio.avatar.inference import generate

    monkeypatch.setattr(generate, "TOY_CHECKPOINT", tmp_path / "no-packaged-model", raising=False)
    report_path = tmp_path / "report.json"
    saved = tmp_path / "generated"
    result = CliRunner().invoke(
        avatar_app,
        ["eval", "--data", str(dataset), "--clips", "2", "--features", str(features_dir)]
        + ["--out", str(report_path), "--save", str(saved)],
    )
    assert result.exit_code == 0, result.output
    assert "RANDOMLY INITIALISED" in result.output and "lip_sync_corr" in result.output
    report = json.loads(report_path.read_text())
    assert report["settings"]["random_weights"] is True and report["settings"]["clips"] == 2
    summary = report["summary"]
    assert isinstance(summary["structure_err_pose"]["mean"], float)  # the structure tower's output
    assert isinstance(summary["identity_drift_30s"]["mean"], float)
    assert isinstance(summary["fvd_toy"]["value"], float) and summary["fvd_toy"]["windows"] == 2
    assert summary["sync_c"]["status"] == "skipped"
    assert sorted(p.name for p in saved.iterdir()) == [
        "clip_00000.mp4",
        "clip_00000.npz",
        "clip_00001.mp4",
        "clip_00001.npz",
    ]
    # the same clips scored again from the files
    again = CliRunner().invoke(avatar_app, ["eval", "--data", str(dataset), "--generated", str(saved)])
    assert again.exit_code == 0, again.output
    assert "structure_err_pose" in again.output


def test_eval_scores_ground_truth_mp4s(dataset, tmp_path):
    generated = tmp_path / "gt"
    generated.mkdir()
    for mp4 in dataset.glob("clip_*.mp4"):
        shutil.copy(mp4, generated / mp4.name)
    out = tmp_path / "gt.json"
    result = CliRunner().invoke(
        avatar_app, ["eval", "--data", str(dataset), "--generated", str(generated), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())["summary"]
    assert summary["identity_drift_30s"]["mean"] < 9.0
    assert summary["structure_err_pose"]["status"] == "skipped"
    assert "no toy feature extractor given" in summary["fvd_toy"]["reason"]


def _fails(args: list[str], *needles: str) -> None:
    result = CliRunner().invoke(avatar_app, ["eval", *args])
    assert result.exit_code == 2, result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_eval_errors_name_the_problem(dataset, tmp_path):
    _fails(["--data", str(tmp_path / "missing")], "no such folder", "worlds make faces")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(["--data", str(empty)], "no manifest.jsonl")
    (empty / "manifest.jsonl").write_text("")
    _fails(["--data", str(empty)], "lists no clips")
    _fails(["--data", str(dataset), "--generated", str(tmp_path / "nope")], "no such folder of generated")
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    _fails(["--data", str(dataset), "--generated", str(unrelated)], "no mp4 named like", "clip_00000.mp4")
    silent = tmp_path / "silent"
    silent.mkdir()
    from flowstudio.video import write_video

    write_video(silent / "clip_00000.mp4", np.zeros((20, 64, 64, 3), np.uint8), 25.0)
    _fails(["--data", str(dataset), "--generated", str(silent)], "has no audio stream", "mux")
    _fails(["--data", str(dataset), "--generated", str(silent), "--checkpoint", str(tmp_path)], "not both")
    wide = tmp_path / "wide"
    make_faces_dataset(wide, 1, seed=HELD_OUT, seconds=0.4, height=64, width=96, workers=1, progress=False)
    _fails(["--data", str(wide), "--clips", "1"], "64x96", "aspect")
