"""The toy codec's own reconstructions of held-out clips, scored as if generated: the floor a toy
DualForce model cannot beat, and the reference of issue 18's FVD bar (a model's ``fvd_toy`` <= 1.5x
the codec's).

Each clip of an ``avatar eval`` dataset (``flowstudio worlds make faces ...``) is encoded and decoded
by :class:`~flowstudio.avatar.model.codec.ToyCodec` at the stride of the toy config (4), cut to a
multiple of 4 frames, and scored with :func:`~flowstudio.avatar.evaluation.evaluate.evaluate_set`
exactly as ``avatar eval`` scores generated clips (the truth read from the same mp4s, the structure
latent the truth's own).

    python benchmarks/avatar_codec_reference.py --data HELDOUT --features FEATURES [--clips 6]
        [--stride 4] [--out REPORT.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flowstudio.avatar.evaluation.evaluate import (
    EvalClip,
    _load_truth,
    _stem,
    evaluate_set,
    read_manifest,
    write_report,
)
from flowstudio.avatar.model.codec import ToyCodec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--features", type=Path)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    codec = ToyCodec(args.stride)
    items = []
    for record in read_manifest(args.data)[: args.clips]:
        truth, wave, rate = _load_truth(args.data, record)
        frames = truth.frames[: len(truth.frames) // 4 * 4]
        items.append(
            EvalClip(
                name=_stem(record),
                frames=codec.decode(codec.encode_frames(frames)),
                waveform=wave,
                sample_rate=rate,
                fps=float(record["fps"]),
                reference_image=truth.frames[0],
                truth=truth,
                structure=truth.structure,
            )
        )
    report = evaluate_set(items, features=args.features)
    report["settings"] = {
        "data": str(args.data),
        "clips": len(items),
        "codec_stride": args.stride,
        "features": str(args.features) if args.features else None,
    }
    summary = {k: v.get("mean", v.get("value")) for k, v in report["summary"].items() if isinstance(v, dict)}
    print(json.dumps(summary, indent=1, default=str))
    if args.out:
        write_report(report, args.out)


if __name__ == "__main__":
    main()
