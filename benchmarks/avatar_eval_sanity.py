"""Sanity anchors for `avatar eval`: the metrics must separate truth, wrong audio and a frozen frame.

On held-out TalkingShapes clips rendered on the fly (seed 1000; no training uses it), three kinds of
"generated" clips are scored with :func:`flowstudio.avatar.evaluation.evaluate.evaluate_set`:

* **ground truth**: the rendered clip, its own audio, its true structure latent (5 keypoints);
* **mismatched audio**: the same frames and structure with the audio of the next clip;
* **static**: the reference (first) frame frozen for the whole clip, its structure frozen too.

The FVD-style distance compares each set with ground-truth clips of *other* identities (seed 1001),
through the toy feature extractor (``--features DIR``, else one trained here with ``--feature-steps``).
Writes ``benchmarks/results/avatar_eval_sanity.{json,md}`` with the settings.

    python benchmarks/avatar_eval_sanity.py [--clips 6] [--seconds 31] [--features DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from flowstudio import __version__
from flowstudio.avatar.evaluation.evaluate import ClipTruth, EvalClip, evaluate_set, format_value
from flowstudio.avatar.evaluation.features import (
    frechet_video_distance,
    load_feature_extractor,
    train_feature_extractor,
)
from flowstudio.metrics import versions
from flowstudio.worlds.faces import render_talking_clip, structure_array
from flowstudio.worlds.faces_dataset import clip_identity_speech

RESULTS = Path(__file__).parent / "results"
ROWS = (
    "lip_sync_corr",
    "lip_sync_conf",
    "lip_sync_corr_at_0",
    "lip_sync_offset",
    "lip_sync_offset_set",
    "structure_err_pose",
    "pose_velocity_w1",
    "identity_drift_10s",
    "identity_drift_30s",
    "identity_world_p95",
    "identity_ratio_30s",
    "warp_error",
    "flicker",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=31.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--reference-seed", type=int, default=1001)
    parser.add_argument("--features", type=Path, default=None)
    parser.add_argument("--feature-steps", type=int, default=800)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    def render(seed: int, index: int):
        identity, speech = clip_identity_speech(seed, index)
        return render_talking_clip(identity, speech, seconds=args.seconds, height=args.size, width=args.size)

    clips = [render(args.seed, i) for i in range(args.clips)]
    reference_set = [render(args.reference_seed, i) for i in range(args.clips)]
    render_seconds = time.perf_counter() - start

    feature_info: dict[str, object]
    if args.features is not None:
        features_dir = args.features
        feature_info = {"path": str(features_dir), "trained_here": False}
    else:
        features_dir = Path(tempfile.mkdtemp(prefix="avatar-eval-features-"))
        config = train_feature_extractor(features_dir, steps=args.feature_steps, threads=args.threads)
        feature_info = {
            "trained_here": True,
            "settings": config["settings"],
            "validation_r2": config["validation_r2"],
            "train_seconds": config["train_seconds"],
        }
    extractor = load_feature_extractor(features_dir)
    reference_features = [extractor.clip_features(c.frames) for c in reference_set]

    def truth(clip) -> ClipTruth:
        return ClipTruth(frames=clip.frames, structure=clip.structure.to_array())

    conditions: dict[str, list[EvalClip]] = {
        "ground truth": [
            EvalClip(
                f"clip_{i}",
                c.frames,
                c.audio,
                c.sample_rate,
                c.fps,
                c.frames[0],
                truth(c),
                structure_array(c.structure, 5),
            )
            for i, c in enumerate(clips)
        ],
        "mismatched audio": [
            EvalClip(
                f"clip_{i}",
                c.frames,
                clips[(i + 1) % len(clips)].audio,
                c.sample_rate,
                c.fps,
                c.frames[0],
                truth(c),
                structure_array(c.structure, 5),
            )
            for i, c in enumerate(clips)
        ],
        "static": [
            EvalClip(
                f"clip_{i}",
                np.repeat(c.frames[:1], len(c.frames), axis=0),
                c.audio,
                c.sample_rate,
                c.fps,
                c.frames[0],
                truth(c),
                np.repeat(structure_array(c.structure, 5)[:1], len(c.frames), axis=0),
            )
            for i, c in enumerate(clips)
        ],
    }
    results: dict[str, dict[str, object]] = {}
    for name, items in conditions.items():
        report = evaluate_set(items, features=None, progress=False)
        summary = report["summary"]
        summary["fvd_toy_vs_other_identities"] = {
            "value": frechet_video_distance(
                [extractor.clip_features(c.frames) for c in items], reference_features
            )
        }
        offsets = [r["metrics"].get("lip_sync_offset") for r in report["cases"]]
        summary["clips_with_offset_plus_1"] = {"value": f"{offsets.count(1)}/{len(offsets)}"}
        results[name] = summary
    truth_vs_truth = frechet_video_distance(
        [extractor.clip_features(c.frames) for c in clips], [extractor.clip_features(c.frames) for c in clips]
    )
    result = {
        "settings": {
            "clips": args.clips,
            "seconds": args.seconds,
            "size": args.size,
            "fps": 25.0,
            "seed": args.seed,
            "reference_seed": args.reference_seed,
            "structure_keypoints": 5,
            "max_offset": 5,
            "speech_threshold": 0.1,
            "min_speech_frames": 50,
            "identity_window": 0.2,
            "features": feature_info,
            "threads": args.threads,
            "metric_versions": versions("avatar"),
            "flowstudio": __version__,
            "torch": torch.__version__,
            "machine": platform.machine(),
        },
        "results": results,
        "fvd_toy_truth_vs_itself": truth_vs_truth,
        "render_seconds": round(render_seconds, 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "avatar_eval_sanity.json").write_text(json.dumps(result, indent=1, default=str) + "\n")

    names = list(conditions)
    lines = [
        "# avatar eval: sanity anchors on TalkingShapes",
        "",
        f"{args.clips} held-out clips (seed {args.seed}) of {args.seconds:g} s at {args.size}x{args.size}, "
        f"25 fps; FVD-style reference set: {args.clips} clips of other identities (seed "
        f"{args.reference_seed}). flowstudio {__version__}, torch {torch.__version__}, {platform.machine()}, "
        f"{args.threads} thread(s); {result['wall_seconds']:.0f} s in all.",
        "",
        "Features: "
        + (
            f"trained here, {feature_info['settings']['steps']} steps, validation R^2 "  # type: ignore[index]
            + ", ".join(f"{k} {v:.2f}" for k, v in feature_info["validation_r2"].items())  # type: ignore[union-attr]
            if feature_info.get("trained_here")
            else f"`{feature_info['path']}`"
        ),
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for row in (*ROWS, "clips_with_offset_plus_1", "fvd_toy_vs_other_identities"):
        lines.append(f"| {row} | " + " | ".join(format_value(results[n][row]) for n in names) + " |")
    lines += [
        "",
        f"FVD-style distance of the ground-truth set with itself: {truth_vs_truth:.2g}.",
        "Values are mean ± std over clips (n = clips); `_set` and `fvd_` rows are one number per set.",
    ]
    (RESULTS / "avatar_eval_sanity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
