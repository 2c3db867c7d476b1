"""Where a toy DualForce model's fvd_toy comes from: appearance, motion or drift; and whether its video
follows the structure.

    python benchmarks/avatar_fvd_parts.py --data HELDOUT --features FEATURES \
        --model NAME=CHECKPOINT[:C:S[:driven]] [--model ...] [--generated NAME=DIR ...] \
        --clips 6 --tag avatar_fvd_parts

Each ``--model`` is generated on the first ``--clips`` held-out clips with context sigma C and audio
guidance S (default: the checkpoint's), noise seed ``--seed``, as ``avatar eval`` does; ``:driven``
replaces the structure tower's sample by each clip's true structure latent at every step
(``evaluate_model(truth_structure=True)``): if the video follows the structure, its head motion then
becomes the truth's. ``--generated NAME=DIR`` reads clips ``avatar eval --save-dir`` wrote. The truth and
the toy codec's own reconstruction of it are always rows.

Columns (every ratio is the row's over the truth's on the same clips):

* **fvd_toy** and its parts: the share of the Fréchet distance that is the mean difference
  (``|mu_g - mu_t|^2``, the rest is the covariance term), and the distance on each third of the window
  feature (:func:`flowstudio.avatar.evaluation.features.window_features`: the window's mean
  embedding = appearance, its spread, its frame-to-frame change), and the appearance distance on the
  first and on the last 10 windows of each clip (equal sizes: a drift shows as last > first).
* **video motion**: the pixels' temporal standard deviation over a clip (how much the head moves), the
  mean absolute frame-to-frame change inside a chunk and across a chunk boundary (a chunk is
  ``4 x frames_per_chunk`` frames: a jump at each boundary is the sampler's seam).
* **structure motion**: the per-clip standard deviation of the saved structure's pose, translation
  and scale channels (7), averaged.
* **reads** of the feature extractor's linear head: the standard deviation of the mouth opening and of
  the head's yaw and x translation, and the mean shift of the blink read (in the truth's standard
  deviations; the fading eyes of the toy read as a blink).

Writes ``benchmarks/results/<tag>.json``, ``<tag>.md`` and ``<tag>.png`` (each row's first 12 frames of
clip 0, i.e. its first three chunks, and frames 400-411, at 3x).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BLOCKS = ("appearance", "spread", "change")
EDGE_WINDOWS = 10


def fvd_parts(generated: list[np.ndarray], truth: list[np.ndarray]) -> dict[str, float]:
    """The Fréchet distance of two sets of per-clip window features ``(n_i, 3 D)`` and its parts
    (module docstring). Clips must have at least ``2 * EDGE_WINDOWS`` windows for the edge parts."""
    from flowstudio.bench.metrics.reference import feature_stats, frechet_distance

    def fd(a: np.ndarray, b: np.ndarray) -> float:
        return max(0.0, frechet_distance(*feature_stats(a), *feature_stats(b)))

    gen, real = np.concatenate(generated), np.concatenate(truth)
    total = fd(gen, real)
    diff = gen.mean(0) - real.mean(0)
    third = gen.shape[1] // 3
    out = {"fvd_toy": total, "mean_share": float(diff @ diff) / total if total > 0 else 0.0}
    for k, name in enumerate(BLOCKS):
        out[f"fd_{name}"] = fd(gen[:, k * third : (k + 1) * third], real[:, k * third : (k + 1) * third])
    if min(len(x) for x in [*generated, *truth]) >= 2 * EDGE_WINDOWS:
        for edge, cut in (("first", slice(0, EDGE_WINDOWS)), ("last", slice(-EDGE_WINDOWS, None))):
            a = np.concatenate([x[cut, :third] for x in generated])
            b = np.concatenate([x[cut, :third] for x in truth])
            out[f"fd_appearance_{edge}"] = fd(a, b)
    return out


def video_motion(frames: np.ndarray, chunk_frames: int) -> dict[str, float]:
    """Temporal std of the pixels and the mean absolute frame change inside chunks and across their
    boundaries, of a uint8 ``(T, H, W, 3)`` clip cut to whole chunks."""
    count = len(frames) // chunk_frames * chunk_frames
    x = frames[:count].astype(np.float32) / 255.0
    change = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))  # change[t]: frame t -> t + 1
    boundary = np.zeros(len(change), bool)
    boundary[chunk_frames - 1 :: chunk_frames] = True
    return {
        "temporal_std": float(x.std(axis=0).mean()),
        "change_inside": float(change[~boundary].mean()),
        "change_boundary": float(change[boundary].mean()) if boundary.any() else float("nan"),
    }


def structure_motion(structure: np.ndarray) -> float:
    """Mean over the pose, translation and scale channels of their standard deviation over the clip."""
    return float(np.asarray(structure, np.float64)[:, :7].std(axis=0).mean())


def head_reads(extractor, embeddings: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The extractor head's per-frame reads of ``mouth``, ``yaw``, ``tx`` and ``blink``."""
    import torch

    names = list(extractor.config["targets"])
    with torch.no_grad():
        reads = np.concatenate(
            [extractor.model.head(torch.from_numpy(e).float()).numpy() for e in embeddings]
        )
    return {key: reads[:, names.index(key)] for key in ("mouth", "yaw", "tx", "blink")}


def _windows(extractor, embeddings: np.ndarray) -> np.ndarray:
    import torch

    from flowstudio.avatar.evaluation.features import window_features

    count = len(embeddings) // extractor.window
    x = torch.from_numpy(embeddings[: count * extractor.window]).reshape(count, extractor.window, -1)
    return window_features(x).numpy()


def measure(
    extractor, clips: list[np.ndarray], structures: list[np.ndarray | None], chunk_frames: int
) -> dict:
    """Per-row raw measurements of clips (uint8 arrays) and their structures."""
    embeddings = [extractor.frame_embeddings(c) for c in clips]
    motion = [video_motion(c, chunk_frames) for c in clips]
    structs = [structure_motion(s) for s in structures if s is not None]
    return {
        "windows": [_windows(extractor, e) for e in embeddings],
        "reads": head_reads(extractor, embeddings),
        "motion": {k: float(np.mean([m[k] for m in motion])) for k in motion[0]},
        "structure_std": float(np.mean(structs)) if structs else None,
    }


def row(raw: dict, truth: dict) -> dict:
    """The table row of one set against the truth's measurements."""
    values = fvd_parts(raw["windows"], truth["windows"])
    for key, value in raw["motion"].items():
        values[f"{key}_ratio"] = value / truth["motion"][key]
    if raw["structure_std"] is not None and truth["structure_std"]:
        values["structure_std_ratio"] = raw["structure_std"] / truth["structure_std"]
    for key in ("mouth", "yaw", "tx"):
        values[f"{key}_std_ratio"] = float(raw["reads"][key].std() / truth["reads"][key].std())
    blink = truth["reads"]["blink"]
    values["blink_shift"] = float((raw["reads"]["blink"].mean() - blink.mean()) / blink.std())
    return values


def picture(
    rows: dict[str, np.ndarray], out: Path, starts: tuple[int, ...] = (0, 400), count: int = 12
) -> None:
    """One labelled strip per row: frames ``start .. start + count - 1`` for each start, at 3x."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # a sibling script
    from avatar_context_noise import frames_picture

    picks = [i for start in starts for i in range(start, start + count)]
    frames_picture(rows, out, picks, scale=3)


def _load_folder(folder: Path, names: list[str]) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    from flowstudio.video import read_video

    clips, structures = [], []
    for name in names:
        clips.append(read_video(folder / f"{name}.mp4").frames)
        npz = folder / f"{name}.npz"
        structures.append(np.load(npz)["structure"] if npz.exists() else None)
    return clips, structures


def main() -> None:
    from flowstudio.avatar.evaluation.evaluate import _load_truth, _stem, evaluate_model, read_manifest
    from flowstudio.avatar.evaluation.features import load_feature_extractor
    from flowstudio.avatar.model.codec import ToyCodec

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--features", required=True, type=Path)
    parser.add_argument("--model", action="append", default=[], help="NAME=CHECKPOINT[:C:S[:driven]]")
    parser.add_argument("--generated", action="append", default=[], help="NAME=DIR of avatar eval --save-dir")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-frames", type=int, default=4, help="video frames per generated chunk")
    parser.add_argument("--save-dir", type=Path, help="keep each --model's clips in SAVE_DIR/NAME")
    parser.add_argument("--tag", default="avatar_fvd_parts")
    args = parser.parse_args()

    extractor = load_feature_extractor(args.features)
    records = read_manifest(args.data)[: args.clips]
    names = [_stem(r) for r in records]
    truth_clips, truth_structs = [], []
    for record in records:
        truth, _, _ = _load_truth(args.data, record)
        truth_clips.append(truth.frames[: len(truth.frames) // 4 * 4])
        truth_structs.append(truth.structure)
    truth = measure(extractor, truth_clips, truth_structs, args.chunk_frames)
    codec = ToyCodec(4)
    codec_clips = [codec.decode(codec.encode_frames(c)) for c in truth_clips]
    sets = {"codec reconstruction": (codec_clips, [None] * len(codec_clips))}  # no structure of its own
    for spec in args.generated:
        name, _, folder = spec.partition("=")
        sets[name] = _load_folder(Path(folder), names)
    rows = {"truth": row(truth, truth)}
    settings: dict = {}
    frames = {"truth": truth_clips[0]}
    for name, (clips, structures) in sets.items():
        rows[name] = row(measure(extractor, clips, structures, args.chunk_frames), truth)
        frames[name] = clips[0]
    for spec in args.model:
        name, _, rest = spec.partition("=")
        checkpoint, *sampler = rest.split(":")
        context = float(sampler[0]) if len(sampler) > 0 else None
        guidance = float(sampler[1]) if len(sampler) > 1 else None
        driven = len(sampler) > 2 and sampler[2] == "driven"
        save = (args.save_dir or RESULTS / f"{args.tag}_clips") / name
        report = evaluate_model(
            args.data,
            checkpoint=checkpoint,
            clips=args.clips,
            seed=args.seed,
            features=args.features,
            save_dir=save,
            progress=False,
            audio_guidance=guidance,
            context_sigma=context,
            truth_structure=driven,
        )
        settings[name] = {
            k: report["settings"][k] for k in ("model", "audio_guidance", "context_sigma", "truth_structure")
        }
        clips, structures = _load_folder(save, names)
        rows[name] = row(measure(extractor, clips, structures, args.chunk_frames), truth)
        frames[name] = clips[0]
        print(f"{name}: fvd_toy {rows[name]['fvd_toy']:.2f}", flush=True)
        write(args, rows, settings, frames)
        if args.save_dir is None:
            import shutil

            shutil.rmtree(save)
    write(args, rows, settings, frames)
    print((RESULTS / f"{args.tag}.md").read_text())


def write(
    args: argparse.Namespace, rows: dict[str, dict], settings: dict, frames: dict[str, np.ndarray]
) -> None:
    """``<tag>.json``, ``<tag>.md`` and ``<tag>.png`` of the rows so far (a stopped run keeps them)."""
    RESULTS.mkdir(exist_ok=True)
    picture(frames, RESULTS / f"{args.tag}.png")
    meta = {
        "data": str(args.data),
        "features": str(args.features),
        "clips": args.clips,
        "seed": args.seed,
        "chunk_frames": args.chunk_frames,
        "models": settings,
        "machine": platform.platform(),
        "command": "python benchmarks/avatar_fvd_parts.py " + " ".join(sys.argv[1:]),
    }
    (RESULTS / f"{args.tag}.json").write_text(json.dumps({"settings": meta, "rows": rows}, indent=1))

    def f(values: dict, key: str, digits: int = 2) -> str:
        value = values.get(key)
        return "-" if value is None or value != value else f"{value:.{digits}f}"

    lines = [
        f"# {args.tag}",
        "",
        f"`{meta['command']}`; {args.clips} held-out clips, noise seed {args.seed}. "
        "Ratios are the row's over the truth's; parts and columns in the script's docstring.",
        "",
        "| row | fvd_toy | mean share | FD appearance | FD spread | FD change "
        "| appearance first 10 / last 10 windows | temporal std | change inside chunk | change at boundary "
        "| structure std | mouth std | yaw std | tx std | blink shift |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in rows.items():
        lines.append(
            f"| {name} | {f(v, 'fvd_toy')} | {f(v, 'mean_share')} | {f(v, 'fd_appearance')} "
            f"| {f(v, 'fd_spread')} "
            f"| {f(v, 'fd_change')} | {f(v, 'fd_appearance_first')} / {f(v, 'fd_appearance_last')} "
            f"| {f(v, 'temporal_std_ratio')} | {f(v, 'change_inside_ratio')} "
            f"| {f(v, 'change_boundary_ratio')} "
            f"| {f(v, 'structure_std_ratio')} | {f(v, 'mouth_std_ratio')} | {f(v, 'yaw_std_ratio')} "
            f"| {f(v, 'tx_std_ratio')} | {f(v, 'blink_shift')} |"
        )
    lines += ["", f"![first three chunks and frames 400-411 of clip 0]({args.tag}.png)", ""]
    (RESULTS / f"{args.tag}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
