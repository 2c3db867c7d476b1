"""A picture of the toy DualForce's mouths: reference / truth / the codec's reconstruction / generated
frames of one held-out clip, cropped around the mouth, at the frames where the truth's mouth opening
(``read_mouth_opening``) is largest and at a few closed ones.

    python benchmarks/avatar_lipsync_frames.py --data HELDOUT --clip 4 \
        --model NAME=CHECKPOINT[@S] [--model ...] --out benchmarks/results/avatar_lipsync_frames.png

Each ``--model`` is generated from the clip's first frame and audio with noise seed 0 (``@S``: audio
guidance ``S``, default 1), exactly as ``avatar eval`` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from flowstudio.avatar.evaluation.evaluate import _load_truth, generate_clip, read_manifest
from flowstudio.avatar.inference.generate import load_model
from flowstudio.avatar.model.codec import ToyCodec
from flowstudio.worlds.faces import read_mouth_opening


def main() -> None:
    import cv2

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--clip", type=int, default=0)
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--columns", type=int, default=8)
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    record = read_manifest(args.data)[args.clip]
    truth, wave, rate = _load_truth(args.data, record)
    frames = truth.frames[: len(truth.frames) // 4 * 4]
    codec = ToyCodec(4)
    rows = {"truth": frames, "codec (stride 4)": codec.decode(codec.encode_frames(frames))}
    for spec in args.model:
        name, _, rest = spec.partition("=")
        path, _, guidance = rest.partition("@")
        model, _ = load_model(path, seed=0)
        guide = float(guidance or 1)
        generated, _ = generate_clip(model, frames[0], wave, rate, seed=0, audio_guidance=guide)
        rows[name] = generated
    length = min(len(v) for v in rows.values())
    opening = read_mouth_opening(frames[:length])
    order = np.argsort(-opening)
    open_frames = sorted(order[: args.columns * 3 : 3][: args.columns - 2].tolist())
    closed = [int(i) for i in np.where(opening == 0)[0] if i > 50][:2]
    picks = sorted(open_frames + closed)
    height, width = frames.shape[1:3]
    top, bottom, left, right = height // 2, height, width // 6, width - width // 6  # the lower face
    tiles = []
    for name, video in rows.items():
        crops = [frames[0][top:bottom, left:right]] + [video[i][top:bottom, left:right] for i in picks]
        strip = np.concatenate([np.pad(c, ((1, 1), (1, 1), (0, 0)), constant_values=255) for c in crops], 1)
        strip = cv2.resize(strip, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_NEAREST)
        label = np.full((18, strip.shape[1], 3), 255, np.uint8)
        cv2.putText(label, name, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([label, strip], 0))
    header = np.full((18, tiles[0].shape[1], 3), 255, np.uint8)
    text = "reference | frames " + " ".join(str(i) for i in picks) + f" (clip {args.clip}, lower face)"
    cv2.putText(header, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    image = np.concatenate([header, *tiles], 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), image[..., ::-1])
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]}), frames {picks}")


if __name__ == "__main__":
    main()
