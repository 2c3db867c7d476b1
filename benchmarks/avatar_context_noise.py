"""Context noise x audio guidance on held-out TalkingShapes clips: one `avatar eval` per setting, in one run.

    python benchmarks/avatar_context_noise.py --data HELDOUT --features FEATURES \
        --model NAME=CHECKPOINT [--model ...] --settings 0:1 0.5:1 0.5:4 0.5:8 \
        --clips 6 --tag avatar_context_noise

A setting ``C:S`` generates with ``context_sigma`` C (the level each generated chunk is committed at,
:mod:`flowstudio.avatar.inference.streaming`) and audio guidance S, noise seed ``--seed``, exactly as
``flowstudio avatar eval --context-sigma C --audio-guidance S`` does; ``C:S:N`` also takes N denoising
steps per chunk (``--steps N``; default the checkpoint's). Writes
``benchmarks/results/<tag>.json`` (every report's summary and per-clip lags, with the settings),
``<tag>.md`` (the table) and ``<tag>.png`` (truth and every setting's frames of clip ``--picture-clip``
at 0, 60, 120, ... so that artefacts growing over the rollout show), all three rewritten after every
setting so that a stopped run keeps the rows it has.

The bar columns follow issue 18 item 1: lip-sync r against 0.6 x the truth's r on the same clips
(``--truth-r``: the truth scored by the same evaluation, e.g. from ``avatar_codec_reference.py``), the
best lag within +-1 frame, the identity ratio at 30 s (<= 1) and fvd_toy (<= 1.5 x the codec's own
reconstruction's, ``--codec-fvd``).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("lip_sync_corr", "lip_sync_conf", "identity_ratio_30s", "fvd_toy", "warp_error", "flicker")


def _value(summary: dict, key: str) -> float | None:
    entry = summary.get(key)
    if isinstance(entry, dict):
        return entry.get("mean", entry.get("value"))
    return None


def _standard_error(summary: dict, key: str) -> float | None:
    """The standard error of a per-clip mean (``std`` over clips is the population's: ddof 0)."""
    entry = summary.get(key)
    if not isinstance(entry, dict) or entry.get("n", 0) < 2 or entry.get("std") is None:
        return None
    return float(entry["std"]) / (entry["n"] - 1) ** 0.5


def _row(report: dict) -> dict:
    from flowstudio.avatar.evaluation.metrics import lags_within_one

    summary = report["summary"]
    lags = [case["metrics"].get("lip_sync_offset") for case in report["cases"]]
    row = {key: _value(summary, key) for key in KEYS}
    row["lags"] = lags
    row["within_1"] = lags_within_one(lags)
    # 6 clips spread widely (identity ratio per clip 0.6-2.1): the mean's standard error travels with it
    row["lip_sync_se"] = _standard_error(summary, "lip_sync_corr")
    row["identity_se"] = _standard_error(summary, "identity_ratio_30s")
    row["generation_seconds"] = report["settings"]["generation_seconds"]
    return row


def sampling(setting: str) -> dict:
    """``C:S`` or ``C:S:STEPS`` as :func:`~flowstudio.avatar.evaluation.evaluate.evaluate_model`'s
    ``context_sigma``, ``audio_guidance`` (1 when empty) and ``steps`` (``None``: the checkpoint's)."""
    context, _, rest = setting.partition(":")
    guidance, _, steps = rest.partition(":")
    return {
        "context_sigma": float(context),
        "audio_guidance": float(guidance or 1),
        "steps": int(steps) if steps else None,
    }


def _flags(values: dict) -> list[str]:
    """The command line that reproduces ``values`` (argparse's namespace; a true switch as its flag)."""
    flags = []
    for key, value in values.items():
        if value is None or value is False:
            continue
        if value is True:
            flags.append(f"--{key.replace('_', '-')}")
        elif key == "model":  # a repeated option
            flags += [f"--model {spec}" for spec in value]
        else:
            text = " ".join(value) if isinstance(value, list) else str(value)
            flags.append(f"--{key.replace('_', '-')} {text}")
    return flags


def _frames(path: Path) -> np.ndarray:
    from flowstudio.video import read_video

    return read_video(path).frames


def _picture(rows: dict[str, np.ndarray], out: Path, every: int = 60, scale: int = 2) -> None:
    length = min(len(v) for v in rows.values())
    picks = list(range(0, length, every))
    header = f"frames {picks[0]}, {picks[1]}, ... {picks[-1]} (every {every}, 25 fps)"
    frames_picture(rows, out, picks, scale=scale, header=header)


def frames_picture(
    rows: dict[str, np.ndarray], out: Path, picks: list[int], *, scale: int = 2, header: str | None = None
) -> None:
    """One labelled strip per row of frames ``picks`` (scaled, nearest), under an optional header line,
    saved as a 256-colour PNG (the flat cartoon frames look the same at a seventh of the bytes)."""
    import cv2
    from PIL import Image

    def text_line(text: str, width: int) -> np.ndarray:
        line = np.full((18, width, 3), 255, np.uint8)
        cv2.putText(line, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        return line

    tiles = []
    for name, video in rows.items():
        shown = [i for i in picks if i < len(video)]
        padded = [np.pad(video[i], ((1, 1), (1, 1), (0, 0)), constant_values=255) for i in shown]
        strip = np.concatenate(padded, 1)
        strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        tiles.append(np.concatenate([text_line(name, strip.shape[1]), strip], 0))
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=255) for t in tiles]
    if header:
        tiles.insert(0, text_line(header, width))
    image = Image.fromarray(np.concatenate(tiles, 0))
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


def main() -> None:
    from flowstudio.avatar.evaluation.evaluate import evaluate_model, read_manifest

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--features", type=Path)
    parser.add_argument("--model", action="append", required=True, help="NAME=CHECKPOINT")
    parser.add_argument(
        "--settings", nargs="+", default=["0:1", "0.5:1", "0.5:4", "0.5:8"], help="C:S or C:S:STEPS"
    )
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--picture-clip", type=int, default=0)
    parser.add_argument("--truth-r", type=float, help="the truth's lip_sync_corr on the same clips")
    parser.add_argument("--codec-fvd", type=float, help="fvd_toy of the codec's own reconstructions")
    parser.add_argument("--tag", default="avatar_context_noise")
    args = parser.parse_args()

    clip_name = Path(read_manifest(args.data)[args.picture_clip]["video"]).stem
    results, pictures = [], {"truth": _frames(args.data / f"{clip_name}.mp4")}
    with tempfile.TemporaryDirectory() as scratch:
        for spec in args.model:
            name, _, checkpoint = spec.partition("=")
            for setting in args.settings:
                chosen = sampling(setting)
                label = f"{name} C={chosen['context_sigma']:g} S={chosen['audio_guidance']:g}" + (
                    f" N={chosen['steps']}" if chosen["steps"] else ""
                )
                save = Path(scratch) / label.replace(" ", "_")
                start = time.perf_counter()
                report = evaluate_model(
                    args.data,
                    checkpoint=checkpoint,
                    clips=args.clips,
                    seed=args.seed,
                    features=args.features,
                    save_dir=save,
                    progress=False,
                    **chosen,
                )
                row = {"model": name, "checkpoint": checkpoint, "context_sigma": chosen["context_sigma"]}
                row |= {
                    "audio_guidance": chosen["audio_guidance"],
                    "steps": report["settings"]["steps"],
                    **_row(report),
                }
                results.append(row)
                pictures[label] = _frames(save / f"{clip_name}.mp4")
                took = time.perf_counter() - start
                print(f"{label}: r {row['lip_sync_corr']:.3f}, {took:.0f} s", flush=True)
                write_outputs(args, results, pictures)  # after every setting: a stopped run keeps its rows
    print((RESULTS / f"{args.tag}.md").read_text())


def write_outputs(args: argparse.Namespace, results: list[dict], pictures: dict[str, np.ndarray]) -> None:
    """``<tag>.json``, ``<tag>.md`` and ``<tag>.png`` of the rows measured so far."""
    RESULTS.mkdir(exist_ok=True)
    _picture(pictures, RESULTS / f"{args.tag}.png")
    bar_r = 0.6 * args.truth_r if args.truth_r is not None else None
    bar_fvd = 1.5 * args.codec_fvd if args.codec_fvd is not None else None
    settings = {
        "data": str(args.data),
        "clips": args.clips,
        "seed": args.seed,
        "features": str(args.features) if args.features else None,
        "bars": {"lip_sync_corr": bar_r, "within_1": "5 of 6", "identity_ratio_30s": 1.0, "fvd_toy": bar_fvd},
        "machine": platform.platform(),
        "command": "python benchmarks/avatar_context_noise.py " + " ".join(_flags(vars(args))),
    }
    (RESULTS / f"{args.tag}.json").write_text(json.dumps({"settings": settings, "rows": results}, indent=1))

    def fmt(value: float | None, bar: float | None = None, below: bool = False) -> str:
        if value is None:
            return "-"
        text = f"{value:.3f}"
        if bar is not None and ((value <= bar) if below else (value >= bar)):
            text = f"**{text}**"
        return text

    lines = [
        f"# {args.tag}",
        "",
        f"`{settings['command']}`; {args.clips} clips of {args.data}, noise seed {args.seed}. "
        "Bold: meets issue 18's bar (lip-sync r >= "
        + (f"{bar_r:.3f}" if bar_r is not None else "0.6 x truth")
        + ", identity ratio <= 1, fvd_toy <= "
        + (f"{bar_fvd:.2f}" if bar_fvd is not None else "1.5 x codec")
        + ").",
        "",
        "| model | context sigma | audio guidance | steps | lip_sync_corr | lip_sync_conf "
        "| best lag per clip | within +-1 | identity ratio 30 s (+- s.e.) | fvd_toy | warp error | flicker "
        "| generation s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        lags = " ".join(f"{lag:+d}" for lag in row["lags"] if lag is not None)
        identity = fmt(row["identity_ratio_30s"], 1.0, below=True)
        if row.get("identity_se") is not None:  # rows written before 2026-12-05 have none
            identity += f" +- {row['identity_se']:.2f}"
        lines.append(
            f"| {row['model']} | {row['context_sigma']:g} | {row['audio_guidance']:g} "
            f"| {row.get('steps', '-')} "
            f"| {fmt(row['lip_sync_corr'], bar_r)} | {fmt(row['lip_sync_conf'])} | {lags} "
            f"| {row['within_1']}/{len(row['lags'])} | {identity} "
            f"| {fmt(row['fvd_toy'], bar_fvd, below=True)} "
            f"| {fmt(row['warp_error'])} | {fmt(row['flicker'])} "
            f"| {row['generation_seconds']:.1f} |"
        )
    lines += ["", f"![frames over the rollout]({args.tag}.png)", ""]
    (RESULTS / f"{args.tag}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
