"""Does the shape reader read generated clips as a person does? Blind human labels against the reader.

The toy model's shape bar (issue 13) is read by ``flowstudio.worlds.readers.read_shape``, validated on
renders and VAE reconstructions. Generated clips are drawn differently (soft halos, blotchy
backdrops), so this checks the reader on them against a person who labels the same clips blind:

1. ``python benchmarks/toy_quality.py --model MODEL --prompts N --save-clips CLIPS`` keeps the
   generations it scored (``CLIPS/t2v_<i>.npz``);
2. ``python benchmarks/reader_human_check.py sheet CLIPS --out SHEET.png`` draws their middle frames
   numbered and with nothing else (no prompt, no reading), and ``SHEET.txt``, one line per clip to fill
   in with the shape seen (``ball bottle box cone cup ring vase``, or ``none``);
3. ``python benchmarks/reader_human_check.py compare CLIPS LABELS.txt --tag NAME`` scores the prompts'
   shapes against the person, the reader, and the reader with the halo kept in the mask (the reader
   before 2026-12-04), with Wilson 95% intervals, and writes ``benchmarks/results/NAME.{json,md}``.

A person is one rater looking at one frame: a check of the instrument, not a replacement for it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from _results import RESULTS, write_results
from toy_quality import held_out, wilson

from flowstudio.worlds.readers import NO_OBJECT, estimate_mask, read_or_no_object, read_shape
from flowstudio.worlds.shapes import SHAPES

CLIP = re.compile(r"t2v_(\d+)\.npz$")
NONE = "none"


def saved_clips(folder: Path) -> dict[int, Path]:
    """``{prompt index: file}`` of the ``t2v_<i>.npz`` generations in ``folder``."""
    found = {int(m.group(1)): p for p in folder.glob("t2v_*.npz") if (m := CLIP.search(p.name))}
    if not found:
        raise SystemExit(f"{folder}: no t2v_<i>.npz clips (write them with toy_quality.py --save-clips)")
    return dict(sorted(found.items()))


def _shape_read(frames: np.ndarray, halo: bool) -> str:
    """The shape reader's answer in the labels' vocabulary (``none`` when it finds no object)."""
    read = read_or_no_object(lambda clip: read_shape(mask=estimate_mask(clip, halo=halo)), frames)
    return NONE if read == NO_OBJECT else read


def read_labels(path: Path) -> dict[int, str]:
    """``index shape`` per line; ``#`` starts a comment. Unknown shapes are refused, not skipped."""
    labels = {}
    allowed = {*SHAPES, NONE}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in allowed:
            raise SystemExit(
                f"{path}:{number}: expected 'INDEX SHAPE' with SHAPE one of {sorted(allowed)}, got {line!r}"
            )
        labels[int(parts[0])] = parts[1]
    if not labels:
        raise SystemExit(f"{path}: no labels")
    return labels


def sheet(folder: Path, out: Path, cols: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = saved_clips(folder)
    rows = -(-len(clips) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (index, path) in zip(axes.flat, clips.items(), strict=False):
        frames = np.load(path)["frames"]
        ax.imshow(frames[len(frames) // 2])
        ax.set_title(f"#{index}", fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    template = out.with_suffix(".txt")
    lines = ["# blind shape labels: one of " + " ".join([*SHAPES, NONE]) + " after each index"]
    template.write_text("\n".join(lines + [f"{i} " for i in clips]) + "\n")
    print(f"wrote {out} and {template}")


def compare(folder: Path, labels_path: Path, tag: str) -> dict:
    clips, labels = saved_clips(folder), read_labels(labels_path)
    missing = sorted(set(labels) - set(clips))
    if missing:
        raise SystemExit(f"labels for clips that are not in {folder}: {missing[:10]}")
    rows = []
    for index in labels:
        frames = np.load(clips[index])["frames"]
        asked = held_out(100_000 + index)[0].shape
        rows.append(
            {
                "index": index,
                "asked": asked,
                "person": labels[index],
                "reader": _shape_read(frames, halo=False),
                "reader_halo_kept": _shape_read(frames, halo=True),
            }
        )
    n = len(rows)

    def agreement(a: str, b: str) -> dict:
        hits = sum(r[a] == r[b] for r in rows)
        return {
            "value": round(hits / n, 4),
            "hits": hits,
            "n": n,
            "ci95": [round(x, 4) for x in wilson(hits, n)],
        }

    result = {
        "settings": {"clips": str(folder), "labels": str(labels_path), "n": n},
        "asked_vs_person": agreement("asked", "person"),
        "asked_vs_reader": agreement("asked", "reader"),
        "asked_vs_reader_halo_kept": agreement("asked", "reader_halo_kept"),
        "person_vs_reader": agreement("person", "reader"),
        "person_vs_reader_halo_kept": agreement("person", "reader_halo_kept"),
        "rows": rows,
    }
    write_results(tag, result, table(result, tag).splitlines(), RESULTS)
    return result


def table(result: dict, tag: str) -> str:
    def cell(entry: dict) -> str:
        low, high = entry["ci95"]
        return f"{entry['value']:.1%} ({entry['hits']}/{entry['n']}) [{low:.0%}, {high:.0%}]"

    lines = [
        f"# {tag}: the shape reader against a person, on the same generated clips",
        "",
        f"Clips: `{result['settings']['clips']}`; labels: `{result['settings']['labels']}` (blind: one frame,"
        " no prompt, no reading).",
        "",
        "| agreement | share [95% interval] |",
        "|---|---|",
        f"| prompt's shape = person's | {cell(result['asked_vs_person'])} |",
        f"| prompt's shape = reader's | {cell(result['asked_vs_reader'])} |",
        f"| prompt's shape = reader's, halo kept in the mask | {cell(result['asked_vs_reader_halo_kept'])} |",
        f"| person = reader | {cell(result['person_vs_reader'])} |",
        f"| person = reader, halo kept | {cell(result['person_vs_reader_halo_kept'])} |",
        "",
        "Clips where the person saw the prompt's shape and the reader did not:",
        "",
    ]
    misses = [r for r in result["rows"] if r["person"] == r["asked"] != r["reader"]]
    lines += [f"- #{r['index']}: {r['asked']}, read {r['reader']}" for r in misses] or ["- none"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    draw = sub.add_parser("sheet", help="numbered middle frames for blind labelling, and a labels template")
    draw.add_argument("clips", type=Path)
    draw.add_argument("--out", type=Path, required=True)
    score = sub.add_parser("compare", help="the prompt, the person and the reader against each other")
    score.add_argument("clips", type=Path)
    score.add_argument("labels", type=Path)
    score.add_argument("--tag", default="reader_human_check")
    args = parser.parse_args()
    if args.command == "sheet":
        sheet(args.clips, args.out)
    else:
        result = compare(args.clips, args.labels, args.tag)
        print(table(result, args.tag))


if __name__ == "__main__":
    main()
