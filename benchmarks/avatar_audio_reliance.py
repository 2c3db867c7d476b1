"""Does a DualForce checkpoint use its audio? Teacher-forced mouth loss with the right audio against
another clip's audio and silence.

On held-out TalkingShapes items (seed 4242, 6 chunks) the video flow-matching loss is computed on the
mouth region only (``mouth_weight`` huge: the weighted mean is the mouth's), with fixed noise draws,
three times: with each item's own audio, with the audio of the next item (shuffled) and with silence
(``silent_features``: zeros, the same condition as audio guidance's negative branch and audio dropout).
``reliance = 1 - right / shuffled``: 0 when the model ignores the audio. A cheap training-time
diagnostic beside lip-sync (``avatar eval``), which needs whole generated clips.

    python benchmarks/avatar_audio_reliance.py CHECKPOINT [CHECKPOINT ...] [--tag NAME]

Writes ``benchmarks/results/<tag>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _results import write_results

from flowstudio import __version__
from flowstudio.avatar.model.audio import silent_features
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.avatar.training.toy_data import TalkingShapesDataset
from flowstudio.avatar.training.train import training_step


def reliance(checkpoint: Path, items: int = 32, draws: int = 4, seed: int = 4242) -> dict[str, float]:
    model = DualForceModel.from_pretrained(checkpoint)
    data = TalkingShapesDataset(model.config, 6, items, seed=seed, mouth_region=True)
    batch = data.batch(list(range(items)))
    variants = {
        "right": batch,
        "shuffled": {**batch, "audio": batch["audio"][torch.roll(torch.arange(items), 1)]},
        "silent": {**batch, "audio": silent_features(batch["audio"])},
    }
    out = {}
    for name, b in variants.items():
        with torch.no_grad():
            losses = [
                float(
                    training_step(
                        model,
                        b,
                        data.layout,
                        torch.Generator().manual_seed(s),
                        model.config,
                        mouth_weight=1e6,
                    ).video
                )
                for s in range(draws)
            ]
        out[f"mouth_loss_{name}"] = sum(losses) / len(losses)
    out["reliance"] = 1.0 - out["mouth_loss_right"] / out["mouth_loss_shuffled"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--tag", default="avatar_audio_reliance")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [{"checkpoint": str(c), **reliance(c)} for c in args.checkpoints]
    settings = {"items": 32, "held_out_seed": 4242, "chunks": 6, "noise_draws": 4, "flowstudio": __version__}
    lines = [
        f"# Audio reliance ({args.tag})",
        "",
        f"Settings: `{json.dumps(settings)}`",
        "",
        "| checkpoint | mouth loss, right audio | shuffled audio | silence | reliance |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['checkpoint']} | {r['mouth_loss_right']:.4f} | {r['mouth_loss_shuffled']:.4f} | "
        f"{r['mouth_loss_silent']:.4f} | {r['reliance']:.3f} |"
        for r in rows
    ]
    print(write_results(args.tag, {"settings": settings, "rows": rows}, lines).read_text())


if __name__ == "__main__":
    main()
