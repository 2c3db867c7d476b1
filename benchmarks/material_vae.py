"""Does the toy model keep a product's material? The material reader on true renders and on the toy
VAE's reconstructions of the same renders.

For ``--clips`` held-out ShapeWorld scenes (dataset seed 2024, never used to fit the readers) the
material (matte, glossy, striped, dotted, checkered) is read with the true object mask from the
render and from ``decode(encode(render))`` by the model's VAE. Reported per pattern family (plain =
matte or glossy: a highlight is often invisible at 128 px, see ``shapes_readers_material.md``) and
per material: how often each reading is right, and how often the reconstruction reads like the
render (what an edit made through this VAE can keep at best). A picture shows one scene in each
material, rendered and reconstructed.

    python benchmarks/material_vae.py [--model flowstudio/assets/toy-shapes] [--clips 100]

Writes ``benchmarks/results/<tag>.{json,md,png}`` (tag ``material_vae``).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from _results import RESULTS, write_results

from flowstudio.worlds import clip_spec, render_scene
from flowstudio.worlds.readers import material_family as family
from flowstudio.worlds.readers import read_material
from flowstudio.worlds.shapes import MATERIALS

SEED = 2024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=Path("flowstudio/assets/toy-shapes"))
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--tag", default="material_vae")
    args = parser.parse_args()

    from flowstudio.pipeline import WanVideoPipeline

    pipe = WanVideoPipeline.from_pretrained(args.model, device="cpu")

    def roundtrip(frames: np.ndarray) -> np.ndarray:
        return pipe.decode_latents(pipe.encode_video(frames))

    rows = []
    start = time.perf_counter()
    for i in range(args.clips):
        spec = clip_spec(SEED, i)
        render = render_scene(spec, 17, 128, 128)
        recon = roundtrip(render.frames)
        rows.append(
            {
                "material": spec.material,
                "render": read_material(render.frames, render.mask)[0],
                "reconstruction": read_material(recon, render.mask)[0],
            }
        )
    seconds = time.perf_counter() - start
    groups: dict[str, dict] = {}
    for key, name in [(family, "family"), (lambda m: m, "material")]:
        for value in sorted({key(r["material"]) for r in rows}):
            picked = [r for r in rows if key(r["material"]) == value]
            groups[f"{name}:{value}"] = {
                "n": len(picked),
                "render_right": sum(key(r["render"]) == value for r in picked),
                "reconstruction_right": sum(key(r["reconstruction"]) == value for r in picked),
                "reconstruction_reads_as_render": sum(
                    key(r["reconstruction"]) == key(r["render"]) for r in picked
                ),
                "reconstruction_reads": dict(
                    sorted(
                        {
                            k: sum(key(r["reconstruction"]) == k for r in picked)
                            for k in {key(r["reconstruction"]) for r in picked}
                        }.items()
                    )  # fmt: skip
                ),
            }
    result = {
        "settings": {"model": str(args.model), "clips": args.clips, "seed": SEED, "size": [17, 128, 128]},
        "seconds": round(seconds, 1),
        "groups": groups,
        "rows": rows,
    }
    lines = [
        f"# {args.tag}: the material reader on true renders and on the VAE's reconstructions",
        "",
        f"Model `{args.model}`, {args.clips} held-out scenes (seed {SEED}), 17x128x128, true object masks. "
        "Counts of clips read right; 'as render': the reconstruction reads like the render (family or "
        "material as in the row).",
        "",
        "| group | clips | render read right | reconstruction read right | reconstruction reads as render "
        "| reconstruction read as |",
        "|---|---|---|---|---|---|",
    ]
    for name, g in groups.items():
        lines.append(
            f"| {name} | {g['n']} | {g['render_right']} | {g['reconstruction_right']} | "
            f"{g['reconstruction_reads_as_render']} | {g['reconstruction_reads']} |"
        )
    lines += ["", f"![renders and reconstructions]({args.tag}.png)"]
    write_results(args.tag, result, lines)
    picture(pipe, roundtrip, RESULTS / f"{args.tag}.png")
    print("\n".join(lines))


def picture(pipe, roundtrip, path: Path) -> None:
    """One photo-style scene in each material: the render (top) and its reconstruction (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = dataclasses.replace(clip_spec(SEED, 3), style="photo")
    fig, axes = plt.subplots(2, len(MATERIALS), figsize=(2.2 * len(MATERIALS), 4.6))
    for column, material in enumerate(MATERIALS):
        render = render_scene(dataclasses.replace(base, material=material), 17, 128, 128)
        recon = roundtrip(render.frames)
        for row, (frames, label) in enumerate([(render.frames, "render"), (recon, "VAE reconstruction")]):
            ax = axes[row][column]
            ax.imshow(frames[8])
            ax.set_xticks([])
            ax.set_yticks([])
            read = read_material(frames, render.mask)[0]
            ax.set_title(f"{material}: reads {read}" if row == 0 else f"reads {read}", fontsize=8)
            if column == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
