"""Memory per GPU of DualForce training on 8 GPUs with FSDP, estimated from the configs.

For each phase config (toy and MOVA-Lite: phase 2 causal video, phase 4 multimodal) this builds the
model on the meta device (exact parameter counts, no memory) and applies the byte counts of
:mod:`flowstudio.avatar.training.memory`. An estimate, not a measurement (``benchmarks/gpu_check.py``
measures on a GPU). Frozen encoders (HuBERT, the VAE) are not in it: training reads precomputed
features and latents. Writes ``benchmarks/results/dualforce_fsdp_memory.{json,md}``.

    python benchmarks/dualforce_fsdp_memory.py [--gpus 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _results import write_results

from flowstudio import __version__
from flowstudio.avatar.model.config import load_config
from flowstudio.avatar.training.memory import fsdp_memory

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("mova_lite_phase2.yaml", "mova_lite_phase4.yaml", "phase2_video.yaml", "phase4_multimodal.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()
    rows = []
    for name in CONFIGS:
        config, rest = load_config(ROOT / "configs" / "dualforce" / name)
        train = rest.get("train", {})
        estimate = fsdp_memory(config, train.get("num_chunks", 3), args.gpus, train.get("batch_size", 1))
        rows.append(
            {
                "config": f"configs/dualforce/{name}",
                "num_chunks": train.get("num_chunks"),
                "batch_size": train.get("batch_size"),
                **estimate.to_dict(),
            }
        )
    settings = {
        "gpus": args.gpus,
        "recipe": "configs/dualforce/accelerate_fsdp.yaml (FSDP2 full shard, bf16 "
        "mixed precision, fp32 master weights, AdamW, activation checkpointing per unit)",
        "kind": "estimate from parameter counts (meta device); not measured on a GPU",
        "flowstudio": __version__,
    }
    lines = [
        "# DualForce training memory per GPU, FSDP (estimate)",
        "",
        f"Settings: `{json.dumps(settings)}`",
        "",
        "| config | parameters | chunks x batch | video tokens | sharded state | gathered weights "
        "| activations | total per GPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['parameters'] / 1e6:,.1f} M | {r['num_chunks']} x {r['batch_size']} "
            f"| {r['video_tokens']} | {r['sharded_state_gib']:.2f} GiB | {r['gathered_weights_gib']:.2f} GiB "
            f"| {r['activations_gib']:.2f} GiB | **{r['total_gib']:.2f} GiB** |"
        )
    lines += [
        "",
        "Sharded state = 16 B per parameter / GPUs (fp32 weights, gradients, AdamW moments); gathered "
        "weights = bf16 root + two units; activations = checkpointed unit inputs + one unit recomputed. "
        "Add the CUDA context (~0.5-1 GiB) and allocator fragmentation. Measure with "
        "`benchmarks/gpu_check.py` before sizing a cluster.",
    ]
    print(write_results("dualforce_fsdp_memory", {"settings": settings, "rows": rows}, lines).read_text())


if __name__ == "__main__":
    main()
