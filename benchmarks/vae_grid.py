"""Side-by-side reconstructions of held-out ShapeWorld clips by two (or more) toy VAEs: a picture.

``toy_quality.py`` gives the numbers (PSNR, readers on reconstructions); this shows what they look
like. Each row is one held-out clip (the same stream as ``toy_quality.py``); for each of the chosen
frames the true render comes first, then each VAE's reconstruction, titled with the clip's PSNR and
the shape the reader sees (red when it is wrong). A VAE is given as ``LABEL=PATH``, where PATH is a
diffusers model folder (its ``vae/``) or a training run folder (``state/vae.pt``, possibly unfinished).

    python benchmarks/vae_grid.py shipped=flowstudio/assets/toy-shapes vae20000=RUN --clips 6 \\
        --out benchmarks/results/vae_grid.png
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from flowstudio.worlds.readers import read_or_no_object
from flowstudio.worlds.shapes import render_clip

_spec = importlib.util.spec_from_file_location("toy_quality", Path(__file__).parent / "toy_quality.py")
toy_quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy_quality)


def vae_roundtrip(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Encode/decode with the VAE of a model folder or of a training run folder."""
    if (path / "state" / "vae.pt").exists():
        return toy_quality.run_state_roundtrip(path)
    if not (path / "vae" / "config.json").exists():
        raise SystemExit(f"{path}: neither a model folder (vae/config.json) nor a run folder (state/vae.pt)")
    from diffusers import AutoencoderKLWan

    return toy_quality.vae_roundtrip(AutoencoderKLWan.from_pretrained(path / "vae"))


def parse_source(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
    return label, Path(path)


def draw(
    clips: list[np.ndarray],
    shapes: list[str],
    recons: dict[str, list[np.ndarray]],
    frames: list[int],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowstudio.worlds.readers import PROMPT_READERS

    labels = list(recons)
    cols = len(frames) * (1 + len(labels))
    fig, axes = plt.subplots(len(clips), cols, figsize=(1.6 * cols, 1.8 * len(clips)), squeeze=False)
    for row, (clip, shape) in enumerate(zip(clips, shapes, strict=True)):
        cells = []
        for t in frames:
            cells.append((clip[t], f"truth f{t}\n{shape}", "black"))
            for label in labels:
                recon = recons[label][row]
                read = read_or_no_object(PROMPT_READERS["shape"], recon)
                title = f"{label} f{t}\n{toy_quality.psnr(recon, clip):.1f} dB, {read}"
                cells.append((recon[t], title, "black" if read == shape else "firebrick"))
        for ax, (image, title, colour) in zip(axes[row], cells, strict=True):
            ax.imshow(image)
            ax.set_title(title, fontsize=6.5, color=colour)
            ax.axis("off")
    fig.suptitle(
        "held-out clips: true render, then each VAE's reconstruction (clip PSNR, shape read; red: misread)",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.985))  # leave the suptitle its own line
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sources", nargs="+", type=parse_source, help="LABEL=PATH (model or run folder)")
    parser.add_argument("--clips", type=int, default=6, help="held-out clips, from index --first")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--out", type=Path, default=toy_quality.RESULTS / "vae_grid.png")
    args = parser.parse_args()
    specs = [toy_quality.held_out(i)[0] for i in range(args.first, args.first + args.clips)]
    clips = [render_clip(spec) for spec in specs]
    bad = [t for t in args.frames if not 0 <= t < len(clips[0])]
    if bad:
        raise SystemExit(f"--frames {bad}: a clip has frames 0..{len(clips[0]) - 1}")
    recons = {}
    for label, path in args.sources:
        roundtrip = vae_roundtrip(path)
        recons[label] = [roundtrip(clip) for clip in clips]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(clips, [spec.shape for spec in specs], recons, args.frames, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
