"""Train and evaluate the DualForce ablations at toy scale: ``flowstudio avatar ablate``.

Runs the base configuration (``full``, ``configs/dualforce/toy.yaml``) and every run YAML of the
ablation folder (``configs/dualforce/ablations/``: each is the base plus the one switch it removes)
with the same training budget, each into ``OUT/<name>/``, then scores each checkpoint with
:func:`flowstudio.avatar.evaluation.evaluate.evaluate_model` on one held-out TalkingShapes dataset (a seed the
runs never trained on). Training resumes from each run's newest checkpoint and a run whose evaluation
is already in ``OUT/<name>/eval.json`` with the same settings is not redone, so an interrupted
ablation continues where it stopped.

Writes ``OUT/ablations.json`` (settings, per-run training summary and every metric), ``OUT/ablations.md``
(the table, each metric's better direction) and ``OUT/ablations.png`` (one bar chart per headline metric).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from flowstudio.avatar.model.config import load_config
from flowstudio.avatar.training.train import TrainConfig, train
from flowstudio.errors import InputError

logger = logging.getLogger(__name__)

FORMAT = "flowstudio.avatar.ablations/1"
# headline metrics of the table and plots: (summary key, label, better direction)
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("lip_sync_corr", "lip-sync corr", "higher"),
    ("lip_sync_offset_set", "lip-sync offset (frames)", "closer to the truth's +1"),
    ("pose_in_limits", "pose in limits", "higher"),
    ("pose_velocity_w1", "pose velocity W1", "lower"),
    ("structure_err_pose", "structure pose error", "lower"),
    ("structure_err_keypoints", "keypoint error", "lower"),
    ("identity_ratio_30s", "identity drift 30 s / world", "lower (<= 1 meets the bar)"),
    ("flicker", "flicker", "lower"),
    ("fvd_toy", "FVD (toy features)", "lower"),
)


def ablation_runs(base: str | Path, folder: str | Path) -> dict[str, Path]:
    """``{"full": base, <stem>: yaml ...}`` in a stable order; the folder must hold run YAMLs."""
    base, folder = Path(base), Path(folder)
    if not base.is_file():
        raise InputError(f"base run YAML {str(base)!r} not found (configs/dualforce/toy.yaml)")
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    if not files:
        raise InputError(f"no ablation run YAMLs in {str(folder)!r} (configs/dualforce/ablations/)")
    return {"full": base, **{f.stem: f for f in files}}


def metric_value(entry: Any) -> float | None:
    """The number of one summary entry (``mean`` of a per-clip metric, ``value`` of a set metric), or
    ``None`` when it was skipped."""
    if not isinstance(entry, dict) or entry.get("status") == "skipped":
        return None
    for key in ("mean", "value"):
        value = entry.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def run_ablations(
    out: str | Path,
    data_dir: str | Path,
    *,
    base: str | Path = "configs/dualforce/toy.yaml",
    folder: str | Path = "configs/dualforce/ablations",
    only: list[str] | None = None,
    steps: int | None = None,
    clips: int = 8,
    features: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate every run (module docstring); returns the ``ablations.json`` content."""
    from flowstudio.avatar.evaluation.evaluate import evaluate_model

    runs = ablation_runs(base, folder)
    if only:
        unknown = sorted(set(only) - set(runs))
        if unknown:
            raise InputError(f"unknown run(s) {unknown}; known: {sorted(runs)}")
        runs = {name: path for name, path in runs.items() if name in only}
    if not Path(data_dir).is_dir():
        raise InputError(
            f"held-out dataset {str(data_dir)!r} not found; make one with "
            "`flowstudio worlds make faces --out DIR --seed 1000 --count 8 --seconds 12`"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "steps": steps,
        "clips": clips,
        "data": str(data_dir),
        "features": str(features),
        "seed": seed,
    }
    results: dict[str, Any] = {}
    for name, path in runs.items():
        model_config, rest = load_config(path)
        run = TrainConfig.from_dict(rest.get("train", {}) or {})
        run = replace(run, output_dir=str(out / name), steps=steps or run.steps)
        started = time.perf_counter()
        records = train(model_config, run)  # resumes from OUT/<name>/checkpoints
        train_seconds = time.perf_counter() - started
        eval_file = out / name / "eval.json"
        stored = json.loads(eval_file.read_text()) if eval_file.is_file() else None
        if (
            stored
            and stored.get("ablation_settings") == settings
            and stored.get("trained_steps") == run.steps
        ):
            report = stored
        else:
            report = evaluate_model(
                data_dir,
                checkpoint=out / name / "final",
                clips=clips,
                seed=seed,
                features=features,
                progress=progress,
            )
            report.update({"ablation_settings": settings, "trained_steps": run.steps})
            eval_file.write_text(json.dumps(report, indent=2, default=str))
        metrics = {key: metric_value(value) for key, value in report["summary"].items()}
        results[name] = {
            "config": str(path),
            "train": {
                **asdict(run),
                "seconds_this_invocation": round(train_seconds, 1),
                "final_loss": records[-1]["total"] if records else None,
            },
            "metrics": metrics,
        }
        logger.info("%s: %s", name, {k: metrics.get(k) for k, _, _ in HEADLINE})
    table = {"format": FORMAT, "settings": settings, "runs": results}
    (out / "ablations.json").write_text(json.dumps(table, indent=2))
    (out / "ablations.md").write_text(markdown_table(table))
    plot_ablations(table, out / "ablations.png")
    return table


def _fmt(value: float | None) -> str:
    return "skipped" if value is None else f"{value:.3f}"


def markdown_table(table: dict[str, Any]) -> str:
    """The ablation table: one row per run, the headline metrics as columns."""
    lines = [
        "# DualForce ablations (toy scale)",
        "",
        f"Settings: `{json.dumps(table['settings'])}`. Better: "
        + "; ".join(f"{label} {direction}" for _, label, direction in HEADLINE)
        + ".",
        "",
        "| run | " + " | ".join(label for _, label, _ in HEADLINE) + " |",
        "|---|" + "---|" * len(HEADLINE),
    ]
    for name, run in table["runs"].items():
        cells = [_fmt(run["metrics"].get(key)) for key, _, _ in HEADLINE]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_ablations(table: dict[str, Any], path: str | Path) -> Path:
    """One bar chart per headline metric (skipped metrics are left out of the figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table["runs"])
    shown = [
        (key, label, direction)
        for key, label, direction in HEADLINE
        if any(table["runs"][n]["metrics"].get(key) is not None for n in names)
    ]
    cols = 4
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, (key, label, direction) in zip(axes.flat, shown, strict=False):
        ax.set_visible(True)
        values = [table["runs"][n]["metrics"].get(key) for n in names]
        ax.bar(
            range(len(names)),
            [v if v is not None else 0.0 for v in values],
            color=["tab:blue" if n == "full" else "tab:gray" for n in names],
        )
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{label} ({direction})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
