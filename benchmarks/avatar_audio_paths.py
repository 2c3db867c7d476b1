"""Which tower's audio path carries a trained DualForce's lip-sync? Deafen one tower at inference.

``audio.paths`` (``dual``, ``video``, ``struct``) is a switch of the audio module at run time: a deaf
tower reads the learned null token (the token every tower reads at the reference block in training) in
place of the audio tokens. The same trained weights are scored three times on one held-out dataset with
``avatar eval`` (same noise seed, the checkpoint's sampler defaults): as trained (``dual``), with the
structure tower deaf (``video``: only the video tower hears) and with the video tower deaf (``struct``).
Where the mouth's sync survives a deaf tower, that tower's audio is not what draws it at inference.

This is not the ``single_path_audio`` ablation, which *trains* with a deaf structure tower: a switch
that changes nothing at inference can still matter in training (the towers share the audio encoder).

    python benchmarks/avatar_audio_paths.py --checkpoint CK --data HELDOUT --features FEATURES [--clips 6]

Writes ``benchmarks/results/<tag>.{json,md}`` (default tag ``avatar_audio_paths``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch
from _results import write_results

from flowstudio.avatar.evaluation.ablate import lag_within_one, metric_value
from flowstudio.avatar.evaluation.evaluate import evaluate_model

PATHS = {
    "dual": "both towers hear (as trained)",
    "video": "structure tower deaf",
    "struct": "video tower deaf",
}
COLUMNS = (
    ("lip_sync_corr", "lip-sync r", 3),
    ("lip_sync_lag_within_1", "lags within +-1", 2),
    ("identity_ratio_30s", "identity 30 s / world", 2),
    ("fvd_toy", "fvd_toy", 1),
    ("flicker", "flicker", 2),
    ("pose_velocity_w1", "pose velocity W1", 4),
)


def with_paths(checkpoint: Path, paths: str, into: Path) -> Path:
    """A copy of ``checkpoint`` whose config's ``audio.paths`` is ``paths`` (weights unchanged)."""
    folder = into / paths
    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["audio"]["paths"] = paths
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--features", type=Path)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tag", default="avatar_audio_paths")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trained = json.loads((args.checkpoint / "config.json").read_text())["audio"].get("paths", "dual")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for paths, meaning in PATHS.items():
            folder = with_paths(args.checkpoint, paths, Path(tmp))
            report = evaluate_model(
                args.data, checkpoint=folder, clips=args.clips, seed=args.seed, features=args.features
            )
            metrics = {key: metric_value(report["summary"].get(key)) for key, _, _ in COLUMNS}
            metrics["lip_sync_lag_within_1"] = lag_within_one(report)
            lags = [case.get("metrics", {}).get("lip_sync_offset") for case in report["cases"]]
            rows.append({"paths": paths, "meaning": meaning, "metrics": metrics, "lags": lags})
            print(paths, json.dumps(metrics))
    settings = {
        "checkpoint": str(args.checkpoint),
        "trained_paths": trained,
        "data": str(args.data),
        "features": str(args.features),
        "clips": args.clips,
        "seed": args.seed,
        "threads": args.threads,
    }

    def cell(value: float | None, digits: int) -> str:
        return "skipped" if value is None else f"{value:.{digits}f}"

    lines = [
        f"# {args.tag}",
        "",
        f"`python benchmarks/avatar_audio_paths.py --checkpoint {args.checkpoint} --data {args.data} "
        f"--features {args.features} --clips {args.clips} --seed {args.seed}`: the same weights (trained "
        f"with `audio.paths: {trained}`) scored with one tower deaf at inference.",
        "",
        "| audio paths at inference | "
        + " | ".join(label for _, label, _ in COLUMNS)
        + " | best lag per clip |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for row in rows:
        cells = [cell(row["metrics"][key], digits) for key, _, digits in COLUMNS]
        lags = " ".join(f"{lag:+d}" if isinstance(lag, int) else "-" for lag in row["lags"])
        lines.append(f"| `{row['paths']}`: {row['meaning']} | " + " | ".join(cells) + f" | {lags} |")
    write_results(args.tag, {"settings": settings, "rows": rows}, lines)


if __name__ == "__main__":
    main()
