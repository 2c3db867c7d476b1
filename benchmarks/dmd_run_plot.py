"""Learning curves of one ``flowstudio distill`` run, with the readers' accuracy of its EMA student over
training against two references on the same evaluation prompts (``flowstudio.distill.monitor``): the
teacher at its default sampling (30 UniPC steps, CFG 5) and the student at initialisation (the teacher's
weights with the student's sampler: its steps, the ``dmd`` sampler, no guidance).

The references are measured once and kept in ``RUN/monitor_references.json`` (a few minutes on one
thread). A run without evaluations (``eval_every: 0``) gets its loss curves only. Writes ``--out`` (a PNG).

    python benchmarks/dmd_run_plot.py /work/runs/dmd/s4 --out docs/images/dmd_sanity300_curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from flowstudio.distill.monitor import ATTRIBUTES, eval_specs, reader_accuracy


def references(run: Path) -> dict[str, dict[str, float]]:
    """Readers' accuracy of the teacher and of the untrained student on the run's evaluation prompts."""
    cached = run / "monitor_references.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    from flowstudio.pipeline import GenerationSettings, WanVideoPipeline

    config = json.loads((run / "config.json").read_text())
    pipe = WanVideoPipeline.from_pretrained(config["teacher"])
    size = {"num_frames": config["num_frames"], "height": config["height"], "width": config["width"]}
    settings = {
        "teacher": {"steps": 30, "guidance_scale": 5.0, "solver": "unipc"},
        "student at initialisation": {
            "steps": config["student_steps"],
            "guidance_scale": 1.0,
            "solver": "dmd",
        },
    }
    out = {
        name: reader_accuracy(
            eval_specs(config["eval_prompts"]),
            lambda i, text, chosen=chosen: (
                pipe.generate(
                    GenerationSettings(prompt=text, seed=i, **chosen, **size), progress=False
                ).frames
            ),
        )
        for name, chosen in settings.items()
    }
    cached.write_text(json.dumps(out, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = json.loads((args.run / "history.json").read_text())
    evals = torch.load(args.run / "state.pt", weights_only=False)["evals"]
    # a run without held-out evaluations (eval_every: 0) gets its loss curves only
    refs = references(args.run) if evals else None
    gan = "disc" in history  # a run with the GAN term: its two losses get a panel of their own
    panels = 2 + int(gan) + int(bool(evals))
    fig, ax = plt.subplots(1, panels, figsize=(4.4 * panels, 3.4))
    curves = [(ax[0], "generator", "C0", "generator loss"), (ax[1], "critic", "C1", "critic loss")]
    if gan:
        curves += [(ax[2], "disc", "C2", "GAN"), (ax[2], "gan_generator", "C3", "GAN")]
    for axis, key, colour, title in curves:
        values = np.asarray(history[key])
        axis.plot(np.convolve(values, np.ones(10) / 10, mode="valid"), color=colour, label=key)
        axis.set_title(f"{title} (10-update mean)")
        axis.set_xlabel("generator update")
    if "regression" in history:  # the regression term (its weighted value is part of the generator loss)
        values = np.asarray(history["regression"])
        ax[0].plot(np.convolve(values, np.ones(10) / 10, mode="valid"), color="C4", label="regression term")
        ax[0].legend(fontsize=8)
    if gan:
        ax[2].legend(fontsize=8)
    if refs is None:
        fig.tight_layout()
        fig.savefig(args.out, dpi=100)
        return
    steps = [0] + [e[0] for e in evals]
    last = ax[-1]
    for i, a in enumerate(ATTRIBUTES):
        start = refs["student at initialisation"][a]
        last.plot(steps, [start] + [e[1][a] for e in evals], marker="o", color=f"C{i}", label=a)
        last.axhline(refs["teacher"][a], color=f"C{i}", ls=":", lw=1)
    last.set_title("readers' accuracy (dotted: the teacher)", fontsize=10)
    last.set_xlabel("generator update")
    last.set_ylim(0.3, 1.0)
    last.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(json.dumps(refs))


if __name__ == "__main__":
    main()
