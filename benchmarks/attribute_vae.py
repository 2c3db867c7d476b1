"""Can the toy model keep a material or a render style at all? The attribute's reader on true renders
and on the toy VAE's reconstructions of the same renders.

An edit is decoded by the VAE, so an attribute the VAE cannot reproduce cannot be edited into a clip
however good the transformer is: the share of reconstructions that read like their render is the
ceiling of every edit of that type (``edit_toy.py``'s material and style accuracy).

For ``--clips`` held-out ShapeWorld scenes (dataset seed 2024, never used to fit the readers) the
attribute is read with the true object mask from the render and from ``decode(encode(render))`` by
the model's VAE:

- ``--attribute material`` (matte, glossy, striped, dotted, checkered): per pattern family (plain =
  matte or glossy: a highlight is often invisible at 128 px, see ``shapes_readers_material.md``) and
  per material;
- ``--attribute style`` (photo, watercolor, posterize, pixel: whole-frame filters): per style.

Each group says how often each reading is right and how often the reconstruction reads like the
render. A picture shows one scene in each value, rendered and reconstructed.

    python benchmarks/attribute_vae.py --attribute style [--model flowstudio/assets/toy-shapes] [--clips 100]

Writes ``benchmarks/results/<tag>.{json,md,png}`` (tag ``<attribute>_vae``).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _results import RESULTS, write_results

from flowstudio.worlds import clip_spec, render_scene
from flowstudio.worlds.readers import material_family, read_material, read_style
from flowstudio.worlds.shapes import MATERIALS, STYLES

SEED = 2024

#: attribute -> (reader, its values, the groupings reported: name -> value -> group key)
ATTRIBUTES: dict[str, tuple[Callable, tuple[str, ...], dict[str, Callable[[str], str]]]] = {
    "material": (read_material, MATERIALS, {"family": material_family, "material": lambda m: m}),
    "style": (read_style, STYLES, {"style": lambda s: s}),
}


def read_roundtrips(
    roundtrip: Callable[[np.ndarray], np.ndarray], attribute: str, clips: int
) -> list[dict[str, str]]:
    """One row per held-out scene: the attribute's true value, and what the reader sees on the render
    and on its reconstruction (true object mask for both)."""
    reader = ATTRIBUTES[attribute][0]
    rows = []
    for i in range(clips):
        spec = clip_spec(SEED, i)
        render = render_scene(spec, 17, 128, 128)
        recon = roundtrip(render.frames)
        rows.append(
            {
                attribute: getattr(spec, attribute),
                "render": reader(render.frames, render.mask)[0],
                "reconstruction": reader(recon, render.mask)[0],
            }
        )
    return rows


def group_counts(rows: list[dict[str, str]], attribute: str) -> dict[str, dict]:
    """Per grouping and value: clips, renders read right, reconstructions read right, reconstructions
    that read like their render, and what the reconstructions read as."""
    groups: dict[str, dict] = {}
    for name, key in ATTRIBUTES[attribute][2].items():
        for value in sorted({key(r[attribute]) for r in rows}):
            picked = [r for r in rows if key(r[attribute]) == value]
            reads = sorted({key(r["reconstruction"]) for r in picked})
            groups[f"{name}:{value}"] = {
                "n": len(picked),
                "render_right": sum(key(r["render"]) == value for r in picked),
                "reconstruction_right": sum(key(r["reconstruction"]) == value for r in picked),
                "reconstruction_reads_as_render": sum(
                    key(r["reconstruction"]) == key(r["render"]) for r in picked
                ),
                "reconstruction_reads": {
                    k: sum(key(r["reconstruction"]) == k for r in picked) for k in reads
                },
            }
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attribute", choices=sorted(ATTRIBUTES), default="material")
    parser.add_argument("--model", type=Path, default=Path("flowstudio/assets/toy-shapes"))
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--tag", default=None, help="result name (default: <attribute>_vae)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    tag = args.tag or f"{args.attribute}_vae"

    from flowstudio.pipeline import WanVideoPipeline

    pipe = WanVideoPipeline.from_pretrained(args.model, device="cpu")

    def roundtrip(frames: np.ndarray) -> np.ndarray:
        return pipe.decode_latents(pipe.encode_video(frames))

    start = time.perf_counter()
    rows = read_roundtrips(roundtrip, args.attribute, args.clips)
    seconds = time.perf_counter() - start
    groups = group_counts(rows, args.attribute)
    as_render = sum(r["reconstruction"] == r["render"] for r in rows)
    result = {
        "settings": {
            "attribute": args.attribute,
            "model": str(args.model),
            "clips": args.clips,
            "seed": SEED,
            "size": [17, 128, 128],
        },
        "seconds": round(seconds, 1),
        "reconstruction_reads_as_render": as_render,
        "groups": groups,
        "rows": rows,
    }
    lines = [
        f"# {tag}: the {args.attribute} reader on true renders and on the VAE's reconstructions",
        "",
        f"Model `{args.model}`, {args.clips} held-out scenes (seed {SEED}), 17x128x128, true object masks. "
        "Counts of clips read right; 'as render': the reconstruction reads like the render (the group's "
        f"key as in the row). Over all clips the reconstruction reads like the render in {as_render} of "
        f"{args.clips}: the most any edit of this type can reach through this VAE.",
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
    lines += ["", f"![renders and reconstructions]({tag}.png)", ""]
    lines.append(
        f"`python benchmarks/attribute_vae.py --attribute {args.attribute} --model {args.model} "
        f"--clips {args.clips}` ({seconds / 60:.0f} min)"
    )
    write_results(tag, result, lines, out=args.out)
    picture(roundtrip, args.attribute, args.out / f"{tag}.png")
    print("\n".join(lines))


def picture(roundtrip: Callable[[np.ndarray], np.ndarray], attribute: str, path: Path) -> None:
    """One scene in each value of ``attribute`` (photo style for materials): the render (top) and its
    reconstruction (bottom), each titled with what the reader sees."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reader, values, _ = ATTRIBUTES[attribute]
    base = clip_spec(SEED, 3)
    if attribute == "material":
        base = dataclasses.replace(base, style="photo")
    fig, axes = plt.subplots(2, len(values), figsize=(2.2 * len(values), 4.6), squeeze=False)
    for column, value in enumerate(values):
        render = render_scene(dataclasses.replace(base, **{attribute: value}), 17, 128, 128)
        recon = roundtrip(render.frames)
        for row, (frames, label) in enumerate([(render.frames, "render"), (recon, "VAE reconstruction")]):
            ax = axes[row][column]
            ax.imshow(frames[8])
            ax.set_xticks([])
            ax.set_yticks([])
            read = reader(frames, render.mask)[0]
            ax.set_title(f"{value}: reads {read}" if row == 0 else f"reads {read}", fontsize=8)
            if column == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
