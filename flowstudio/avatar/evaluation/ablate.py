"""Train and evaluate the DualForce ablations at toy scale: ``flowstudio avatar ablate``.

Runs the base configuration (``full``, ``configs/dualforce/toy_packaged.yaml``: the packaged toy's
recipe) and every run YAML of the ablation folder (``configs/dualforce/ablations/``: each is the base
plus the one switch it removes) with the same training budget, once per seed, each into
``OUT/<name>/seed_<s>/``, then scores each checkpoint with
:func:`flowstudio.avatar.evaluation.evaluate.evaluate_model` on one held-out TalkingShapes dataset (a seed the
runs never trained on). Seed ``s`` is the run's training seed (initialisation and batches) and the
evaluation's noise seed, so the spread over seeds is the spread a user re-running the recipe would see.
Training resumes from each run's newest checkpoint, and a run whose evaluation is already in
``OUT/<name>/seed_<s>/eval.json``, made from the same recipe and evaluation settings, is neither
trained nor scored again (its checkpoints may be gone: keeping the ``eval.json`` files is enough), so an
interrupted ablation continues where it stopped, and several processes may share the runs out with
``only`` before one call without it assembles the table (with ``stored_only``, that call trains nothing
and says which evaluations are missing).

Writes ``OUT/ablations.json`` (settings, per-run and per-seed training summary and every metric, the
mean and standard deviation over seeds), ``OUT/ablations.md`` (the table of mean +- std, each metric's
better direction, and which runs differ from ``full`` by more than their spread) and
``OUT/ablations.png`` (one bar chart per headline metric, error bars one standard deviation).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from flowstudio.avatar.model.config import DualForceConfig, load_config
from flowstudio.avatar.training.train import TrainConfig, train
from flowstudio.errors import InputError

logger = logging.getLogger(__name__)

FORMAT = "flowstudio.avatar.ablations/1"
# headline metrics of the table and plots: (summary key, label, better direction)
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("lip_sync_corr", "lip-sync corr", "higher"),
    ("lip_sync_offset_set", "lip-sync offset (frames)", "closer to the truth's +1"),
    ("lip_sync_lag_within_1", "clips with best lag within +-1", "higher (issue 18's bar: 5 of 6)"),
    ("pose_in_limits", "pose in limits", "higher"),
    ("pose_velocity_w1", "pose velocity W1", "lower"),
    ("structure_err_pose", "structure pose error", "lower"),
    ("structure_err_keypoints", "keypoint error", "lower"),
    ("identity_ratio_30s", "identity drift 30 s / world", "lower (<= 1 meets the bar)"),
    ("flicker", "flicker", "lower"),
    ("fvd_toy", "FVD (toy features)", "lower"),
)


DEFAULT_BASE = "configs/dualforce/toy_packaged.yaml"


def ablation_runs(base: str | Path, folder: str | Path) -> dict[str, Path]:
    """``{"full": base, <stem>: yaml ...}`` in a stable order; the folder must hold run YAMLs."""
    base, folder = Path(base), Path(folder)
    if not base.is_file():
        raise InputError(f"base run YAML {str(base)!r} not found ({DEFAULT_BASE})")
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    if not files:
        raise InputError(f"no ablation run YAMLs in {str(folder)!r} (configs/dualforce/ablations/)")
    return {"full": base, **{f.stem: f for f in files}}


def lag_within_one(report: dict[str, Any]) -> float | None:
    """Fraction of the scored clips whose best lip-sync lag is within +-1 frame (the world's mouth
    follows its sound by +1; issue 18's lag bar counts these clips), ``None`` when no clip has a lag."""
    from flowstudio.avatar.evaluation.metrics import lags_within_one

    lags = [case.get("metrics", {}).get("lip_sync_offset") for case in report.get("cases", [])]
    lags = [lag for lag in lags if isinstance(lag, int | float) and not isinstance(lag, bool)]
    return lags_within_one(lags) / len(lags) if lags else None


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


def spread(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1) of the values that were measured; the standard
    deviation is ``None`` below two values, the mean ``None`` when nothing was measured."""
    measured = [v for v in values if v is not None]
    if not measured:
        return None, None
    return statistics.fmean(measured), statistics.stdev(measured) if len(measured) > 1 else None


def stands_out(run: dict[str, Any], full: dict[str, Any], key: str) -> bool:
    """Whether ``run`` differs from ``full`` on ``key`` by more than both runs' spreads together
    (mean +- std ranges that do not overlap); never with fewer than two seeds on either side."""
    mean, std = run["metrics"].get(key), run.get("std", {}).get(key)
    base_mean, base_std = full["metrics"].get(key), full.get("std", {}).get(key)
    if None in (mean, std, base_mean, base_std):
        return False
    return abs(mean - base_mean) > std + base_std


@dataclass
class _Plan:
    """One run and seed: its training config, what a reusable stored evaluation must have been made
    from (the same recipe, wherever its folder was, and the same evaluation settings), the stored
    evaluation, and why it cannot be reused (``missing``: ``None`` when it can)."""

    seed: int
    folder: Path
    run: TrainConfig
    model_config: DualForceConfig
    made_from: dict[str, Any]
    stored: dict[str, Any] | None
    missing: str | None


def _with_new_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """``stored``'s record of how it was made, with every model and training field added to the code
    since then at its default (the value it had in effect): a new field must not disown finished runs.
    A record the current configuration classes cannot read is returned as it is (and then differs)."""
    try:
        model = DualForceConfig.from_dict(stored["model_config"]).to_dict()
        train_config = asdict(TrainConfig.from_dict(stored["train_config"]))
    except (KeyError, TypeError, ValueError, InputError):
        return stored
    train_config.pop("output_dir", None)
    normalised = {**stored, "model_config": model, "train_config": train_config}
    return json.loads(json.dumps(normalised, default=str))  # as stored: tuples are lists


def _plan(
    model_config: DualForceConfig,
    recipe: TrainConfig,
    folder: Path,
    seed: int,
    steps: int | None,
    settings: dict[str, Any],
) -> _Plan:
    run = replace(recipe, output_dir=str(folder), steps=steps or recipe.steps, seed=seed)
    made_from = {
        "ablation_settings": {**settings, "seeds": None, "seed": seed},
        "trained_steps": run.steps,
        "model_config": model_config.to_dict(),
        "train_config": {k: v for k, v in asdict(run).items() if k != "output_dir"},
    }
    made_from = json.loads(json.dumps(made_from, default=str))  # as stored: tuples are lists
    eval_file = folder / "eval.json"
    stored = json.loads(eval_file.read_text()) if eval_file.is_file() else None
    if stored is None:
        missing: str | None = "no eval.json"
    else:
        recorded = _with_new_defaults(stored)
        differ = [key for key, value in made_from.items() if recorded.get(key) != value]
        missing = f"its eval.json was made with another {', '.join(differ)}" if differ else None
    return _Plan(seed, folder, run, model_config, made_from, stored, missing)


def run_ablations(
    out: str | Path,
    data_dir: str | Path,
    *,
    base: str | Path = DEFAULT_BASE,
    folder: str | Path = "configs/dualforce/ablations",
    only: list[str] | None = None,
    steps: int | None = None,
    clips: int = 8,
    features: str | Path | None = None,
    seeds: Sequence[int] = (0,),
    progress: bool = True,
    stored_only: bool = False,
) -> dict[str, Any]:
    """Train and evaluate every run once per seed (module docstring); returns the ``ablations.json``
    content. ``stored_only``: train and score nothing, assemble the table from the stored evaluations;
    a run or seed without a matching one is an :class:`InputError` that lists them all (so that a table
    assembled from runs shared out over processes or machines never starts a training by mistake)."""
    from flowstudio.avatar.evaluation.evaluate import evaluate_model

    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise InputError(f"seeds must be distinct non-negative integers, got {seeds}")
    runs = ablation_runs(base, folder)
    if only:
        unknown = sorted(set(only) - set(runs))
        if unknown:
            raise InputError(f"unknown run(s) {unknown}; known: {sorted(runs)}")
        runs = {name: path for name, path in runs.items() if name in only}
    if not Path(data_dir).is_dir():
        raise InputError(
            f"held-out dataset {str(data_dir)!r} not found; make one with "
            "`flowstudio worlds make faces DIR --seed 1000 --clips 6 --seconds 32 --height 64 --width 64`"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "steps": steps,
        "clips": clips,
        "data": str(data_dir),
        "features": str(features),
        "seeds": seeds,
    }
    recipes = {}  # each run's YAML read once: (model config, training recipe)
    for name, path in runs.items():
        model_config, rest = load_config(path)
        recipes[name] = (model_config, TrainConfig.from_dict(rest.get("train", {}) or {}))
    plans = {
        name: [_plan(*recipes[name], out / name / f"seed_{seed}", seed, steps, settings) for seed in seeds]
        for name in runs
    }
    if stored_only:
        missing = [
            f"{name} seed {plan.seed}: {plan.missing}"
            for name, per_run in plans.items()
            for plan in per_run
            if plan.missing
        ]
        if missing:
            raise InputError(
                f"{len(missing)} run(s) without a stored evaluation in {str(out)!r} that matches these "
                f"settings (nothing was trained): {'; '.join(missing)}. Run them first (the same command "
                "without --stored-only, with --only RUN), or copy their OUT/<run>/seed_<s>/eval.json here"
            )
    results: dict[str, Any] = {}
    for name, path in runs.items():
        per_seed: dict[str, Any] = {}
        for plan in plans[name]:
            if plan.missing:  # read again: another process sharing the runs out may have scored it since
                plan = _plan(*recipes[name], plan.folder, plan.seed, steps, settings)
            seed, folder_s, run, made_from = plan.seed, plan.folder, plan.run, plan.made_from
            eval_file = folder_s / "eval.json"
            if plan.stored is not None and not plan.missing:
                stored = plan.stored
                # scored before: neither trained nor evaluated again (the run's checkpoints may be gone)
                report, trained = stored, {**stored.get("training", {}), "seconds_this_invocation": 0.0}
            else:
                started = time.perf_counter()
                records = train(plan.model_config, run)  # resumes from OUT/<name>/seed_<s>/checkpoints
                trained = {
                    "seconds_this_invocation": round(time.perf_counter() - started, 1),
                    "final_loss": records[-1]["total"] if records else None,
                }
                report = evaluate_model(
                    data_dir,
                    checkpoint=folder_s / "final",
                    clips=clips,
                    seed=seed,
                    features=features,
                    progress=progress,
                )
                report.update({**made_from, "training": trained})
                eval_file.write_text(json.dumps(report, indent=2, default=str))
            per_seed[str(seed)] = {
                "train": {**asdict(run), **trained},
                "metrics": {
                    **{key: metric_value(value) for key, value in report["summary"].items()},
                    "lip_sync_lag_within_1": lag_within_one(report),
                },
            }
        keys = sorted({key for entry in per_seed.values() for key in entry["metrics"]})
        means, stds = {}, {}
        for key in keys:
            means[key], stds[key] = spread([entry["metrics"].get(key) for entry in per_seed.values()])
        results[name] = {"config": str(path), "seeds": per_seed, "metrics": means, "std": stds}
        logger.info("%s: %s", name, {k: means.get(k) for k, _, _ in HEADLINE})
    table = {"format": FORMAT, "settings": settings, "runs": results}
    (out / "ablations.json").write_text(json.dumps(table, indent=2))
    (out / "ablations.md").write_text(markdown_table(table))
    plot_ablations(table, out / "ablations.png")
    return table


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "skipped"
    return f"{value:.3f}" if std is None else f"{value:.3f} ± {std:.3f}"


def markdown_table(table: dict[str, Any]) -> str:
    """The ablation table: one row per run, the headline metrics (mean +- std over seeds) as columns;
    a cell is bold when its run stands out from ``full`` (:func:`stands_out`)."""
    seeds = table["settings"].get("seeds") or [table["settings"].get("seed", 0)]
    full = table["runs"].get("full")
    lines = [
        "# DualForce ablations (toy scale)",
        "",
        f"Settings: `{json.dumps(table['settings'])}`. Cells: mean ± standard deviation over "
        f"{len(seeds)} seed(s) (training and evaluation noise); **bold**: the run's mean ± std range "
        "does not overlap the full model's. Better: "
        + "; ".join(f"{label} {direction}" for _, label, direction in HEADLINE)
        + ".",
        "",
        "| run | " + " | ".join(label for _, label, _ in HEADLINE) + " |",
        "|---|" + "---|" * len(HEADLINE),
    ]
    for name, run in table["runs"].items():
        cells = []
        for key, _, _ in HEADLINE:
            cell = _fmt(run["metrics"].get(key), run.get("std", {}).get(key))
            if full is not None and name != "full" and stands_out(run, full, key):
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_ablations(table: dict[str, Any], path: str | Path) -> Path:
    """One bar chart per headline metric, error bars one standard deviation over seeds (skipped
    metrics are left out of the figure)."""
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
        errors = [table["runs"][n].get("std", {}).get(key) for n in names]
        ax.bar(
            range(len(names)),
            [v if v is not None else 0.0 for v in values],
            # no bars at all from one seed: a zero-width bar would read as "no spread"
            yerr=None if all(e is None for e in errors) else [e if e is not None else 0.0 for e in errors],
            capsize=3,
            color=["tab:blue" if n == "full" else "tab:gray" for n in names],
        )
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{label} ({direction})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
