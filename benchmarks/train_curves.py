"""Loss curves of toy-model training runs side by side, at equal steps (one stage, e.g. the transformer).

Reads each run's ``state/<stage>.pt`` (the trainer's checkpoint keeps the loss of every step), so it
works on runs in progress. Writes ``benchmarks/results/<tag>.{json,md,png}``: the mean loss over
windows of ``--window`` steps, compared only over the steps every run has reached, with the ratio of
each run to the first.

    python benchmarks/train_curves.py RUN_A RUN_B [--labels a b] [--stage dit] [--window 100] --tag T

The training loss of a flow-matching stage is a mean over latent elements, so runs whose transformers
differ (patch size, width) but share the VAE and the data compare on one scale. It is the loss on
training batches: it says which run fits faster, not which one generates better
(``toy_quality.py`` on ``worlds train snapshot`` exports does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from flowstudio.train import checkpoint

RESULTS = Path(__file__).parent / "results"


def load_losses(run: Path, stage: str) -> list[float]:
    """The per-step training losses of ``run``'s stage ``stage`` (either checkpoint format)."""
    file = run / "state" / f"{stage}.pt"
    if not file.exists():
        raise SystemExit(f"{file}: no checkpoint of stage {stage!r} in {run}")
    losses = checkpoint.read(file, [stage]).get("history", {}).get("loss")
    if not losses:
        raise SystemExit(f"{file}: no loss history")
    return [float(v) for v in losses]


def windows(losses: list[float], steps: int, window: int) -> list[tuple[int, float]]:
    """``(end step, mean loss)`` of consecutive windows of ``window`` steps over the first ``steps``."""
    return [(end, float(np.mean(losses[end - window : end]))) for end in range(window, steps + 1, window)]


def compare(runs: dict[str, list[float]], window: int) -> dict:
    steps = min(len(v) for v in runs.values())
    steps -= steps % window
    if steps < window:
        raise SystemExit(f"the shortest run has {steps} steps, fewer than one window of {window}")
    curves = {name: windows(losses, steps, window) for name, losses in runs.items()}
    first = next(iter(curves))
    return {
        "steps_compared": steps,
        "window": window,
        "curves": curves,
        "ratio_to_first_last_window": {
            name: curve[-1][1] / curves[first][-1][1] for name, curve in curves.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--labels", nargs="+")
    parser.add_argument("--stage", default="dit")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--tag", required=True)
    args = parser.parse_args()
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit("give one label per run")
    losses = {label: load_losses(run, args.stage) for label, run in zip(labels, args.runs, strict=True)}
    result = compare(losses, args.window)
    result["settings"] = {"runs": [str(r) for r in args.runs], "labels": labels, "stage": args.stage}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, curve in result["curves"].items():
        ax.plot([s for s, _ in curve], [v for _, v in curve], marker=".", label=name)
    ax.set(
        xlabel="step",
        ylabel=f"training loss (mean over {args.window} steps)",
        yscale="log",
        title=f"{args.stage} stage, first {result['steps_compared']} steps",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.tag}.png", dpi=90)
    plt.close(fig)

    marks = sorted({s for s, _ in next(iter(result["curves"].values()))})
    shown = [m for m in marks if m in (marks[0], marks[-1]) or m % max(len(marks) // 8 * args.window, 1) == 0]
    lines = [
        f"# Training loss at equal steps ({args.tag})",
        "",
        f"Settings: `{json.dumps(result['settings'])}`",
        "",
        "| step | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for step in shown:
        values = [dict(result["curves"][name])[step] for name in labels]
        lines.append(f"| {step} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    ratios = ", ".join(f"{k} {v:.3f}" for k, v in result["ratio_to_first_last_window"].items())
    lines += ["", f"Last window, ratio to {labels[0]}: {ratios}.", "", f"![curves]({args.tag}.png)"]
    (RESULTS / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
