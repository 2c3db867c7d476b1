"""Is text-to-video accuracy of the toy model a sampling problem? Guidance and shift, same prompts.

Reads the same held-out prompts as ``toy_quality.py`` with each (guidance scale, flow shift) setting
and reports colour / shape / background read correctly (Wilson 95% intervals). If a setting moved the
readers far above the default (guidance 5, shift 5), the default would be wrong; if none does, the
model itself is what misses the bars. Writes ``benchmarks/results/<tag>.{json,md}``.

    python benchmarks/toy_sampling.py --model flowstudio/assets/toy-shapes --prompts 40
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from toy_quality import READERS, RESULTS, _fmt_prop, _proportion, held_out

from flowstudio import __version__
from flowstudio.pipeline import GenerationSettings, WanVideoPipeline
from flowstudio.worlds.readers import read_or_no_object

SETTINGS = ((5.0, 5.0), (5.0, 2.0), (5.0, 1.0), (9.0, 2.0), (2.0, 2.0))  # (guidance, shift); first = default


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--tag", default="toy_sampling")
    parser.add_argument(
        "--settings",
        default=",".join(f"{g:g}:{s:g}" for g, s in SETTINGS),
        help="comma-separated guidance:shift pairs to compare, the model's default first",
    )
    args = parser.parse_args()
    settings_list = [tuple(float(v) for v in item.split(":")) for item in args.settings.split(",")]
    torch.set_grad_enabled(False)
    pipe = WanVideoPipeline.from_pretrained(args.model, device="cpu")
    rows = []
    for guidance, shift in settings_list:
        hits, start = dict.fromkeys(READERS, 0), time.perf_counter()
        for i in range(args.prompts):
            spec, text = held_out(100_000 + i)  # the prompts of toy_quality.py's T2V measurement
            settings = GenerationSettings(
                prompt=text, steps=args.steps, guidance_scale=guidance, shift=shift, seed=i
            )
            frames = pipe.generate(settings, progress=False).frames
            for name, reader in READERS.items():
                hits[name] += read_or_no_object(reader, frames) == getattr(spec, name)
        row = {"guidance_scale": guidance, "shift": shift, "seconds": round(time.perf_counter() - start, 1)}
        row |= {name: _proportion(h, args.prompts) for name, h in hits.items()}
        rows.append(row)
        print(
            f"guidance {guidance} shift {shift}: " + ", ".join(f"{k} {row[k]['value']:.0%}" for k in READERS)
        )
    result = {
        "settings": {
            "model": str(args.model),
            "prompts": args.prompts,
            "steps": args.steps,
            "solver": "unipc",
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "torch": torch.__version__,
            "flowstudio": __version__,
        },
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Toy model text-to-video by sampling setting ({args.tag})",
        "",
        f"Settings: `{json.dumps(result['settings'])}`",
        "",
        "| guidance | shift | colour | shape | background |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['guidance_scale']:g} | {r['shift']:g} | " + " | ".join(_fmt_prop(r[k]) for k in READERS) + " |"
        for r in rows
    ]
    (RESULTS / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
