"""Which latent codec serves the TalkingShapes faces (issue 8, item 2)?

For held-out TalkingShapes clips (seed 1000, never trained on) at each frame size, every candidate codec
encodes and decodes the clip; we report

- ``psnr``: reconstruction PSNR (dB) of the decoded frames;
- ``mouth_r``: Pearson correlation between the mouth opening read by the analytic reader
  (:func:`flowstudio.worlds.faces.read_mouth_opening`) on the *decoded* frames and the ground-truth
  opening; ``mouth_r_render`` is the same reader on the renders themselves (the ceiling). A codec that
  averages the mouth away cannot carry lip-sync, whatever the model learns.

Candidates: the parameter-free toy codec at spatial stride 8 (the Wan VAE's rate) and 4, and, with
``--shapes-vae MODEL``, the ShapeWorld toy VAE (``AutoencoderKLWan``, 16x) of a trained toy model.

    python benchmarks/faces_codec.py [--clips 8] [--seconds 4] [--shapes-vae src/flowstudio/assets/toy-shapes]

Writes ``benchmarks/results/faces_codec.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowstudio.avatar.model.codec import ToyCodec
from flowstudio.worlds.faces import read_mouth_opening, render_talking_clip
from flowstudio.worlds.faces_dataset import clip_identity_speech

RESULTS = Path(__file__).resolve().parent / "results"
EVAL_SEED = 1000


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return None  # a constant reading (e.g. the mouth averaged away) has no correlation
    return float(np.corrcoef(a, b)[0, 1])


def toy_roundtrip(stride: int):
    codec = ToyCodec(stride=stride)

    def run(frames: np.ndarray) -> np.ndarray:
        usable = len(frames) - len(frames) % 4
        return codec.decode(codec.encode_frames(frames[:usable]))

    return run


def shapes_vae_roundtrip(model: Path):
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(model / "vae").eval()

    @torch.no_grad()
    def run(frames: np.ndarray) -> np.ndarray:
        usable = 1 + 4 * ((len(frames) - 1) // 4)  # the Wan VAE takes 4k + 1 frames
        x = torch.from_numpy(frames[:usable]).float().permute(3, 0, 1, 2)[None] / 127.5 - 1
        out = vae.decode(vae.encode(x).latent_dist.mode()).sample
        return ((out[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--shapes-vae", type=Path, default=None, help="a trained ShapeWorld toy model folder")
    parser.add_argument("--tag", default="faces_codec")
    args = parser.parse_args()
    torch.manual_seed(0)
    codecs: dict[str, Any] = {"toy-stride8": toy_roundtrip(8), "toy-stride4": toy_roundtrip(4)}
    if args.shapes_vae is not None:
        codecs["shapeworld-vae-16x"] = shapes_vae_roundtrip(args.shapes_vae)
    rows = []
    start = time.perf_counter()
    for size in args.sizes:
        clips = []
        for index in range(args.clips):
            identity, speech = clip_identity_speech(EVAL_SEED, index)
            clips.append(render_talking_clip(identity, speech, seconds=args.seconds, height=size, width=size))
        render_r = [pearson(read_mouth_opening(c.frames), c.mouth_opening) for c in clips]
        for name, roundtrip in codecs.items():
            psnrs, rs = [], []
            for clip in clips:
                decoded = roundtrip(clip.frames)
                n = len(decoded)
                psnrs.append(psnr(decoded, clip.frames[:n]))
                rs.append(pearson(read_mouth_opening(decoded), clip.mouth_opening[:n]))
            valid = [r for r in rs if r is not None]
            rows.append(
                {
                    "codec": name,
                    "size": size,
                    "psnr": round(float(np.mean(psnrs)), 2),
                    "mouth_r": round(float(np.mean(valid)), 3) if valid else None,
                    "mouth_constant_clips": len(rs) - len(valid),
                    "mouth_r_render": round(float(np.mean([r for r in render_r if r is not None])), 3),
                }
            )
            print(rows[-1], flush=True)
    result = {
        "benchmark": "faces_codec",
        "settings": {**vars(args), "shapes_vae": str(args.shapes_vae), "eval_seed": EVAL_SEED},
        "machine": {"python": platform.python_version(), "torch": torch.__version__},
        "seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Latent codecs on TalkingShapes faces",
        "",
        f"`python benchmarks/faces_codec.py --clips {args.clips} --seconds {args.seconds}"
        + (f" --shapes-vae {args.shapes_vae}" if args.shapes_vae else "")
        + f"` (held-out seed {EVAL_SEED}).",
        "",
        "| codec | size | PSNR (dB) | mouth r (decoded) | clips read as constant | mouth r (renders) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['codec']} | {r['size']} | {r['psnr']} | {r['mouth_r']} | {r['mouth_constant_clips']} "
            f"| {r['mouth_r_render']} |"
        )
    (RESULTS / f"{args.tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
