"""Two `toy_quality.py` reports on the same held-out prompts and seeds, compared per attribute with the
exact McNemar test on the discordant prompts (read right by one model and wrong by the other).

    python benchmarks/toy_quality_compare.py benchmarks/results/toy_quality_A.json \
        benchmarks/results/toy_quality_B.json --labels A B [--tag NAME]

Prints a Markdown table; with ``--tag`` also writes ``benchmarks/results/<tag>.md``. Refuses reports whose
prompt lists differ (the test pairs prompt by prompt).
"""

from __future__ import annotations

import argparse
import json
from math import comb
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ATTRIBUTES = ("color", "shape", "background")


def exact_mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the binomial test of ``only_a`` vs ``only_b`` at p = 1/2."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare(items_a: list[dict], items_b: list[dict]) -> dict[str, dict[str, float]]:
    """Per attribute: accuracy of each, discordant counts and the McNemar p-value."""
    if [x["prompt"] for x in items_a] != [x["prompt"] for x in items_b]:
        raise SystemExit("the two reports were made on different prompts; run both with the same --prompts")
    out = {}
    for attribute in ATTRIBUTES:
        right_a = [x[attribute]["read"] == x[attribute]["expected"] for x in items_a]
        right_b = [x[attribute]["read"] == x[attribute]["expected"] for x in items_b]
        only_a = sum(1 for a, b in zip(right_a, right_b, strict=True) if a and not b)
        only_b = sum(1 for a, b in zip(right_a, right_b, strict=True) if b and not a)
        out[attribute] = {
            "accuracy_a": sum(right_a) / len(right_a),
            "accuracy_b": sum(right_b) / len(right_b),
            "only_a": only_a,
            "only_b": only_b,
            "p": exact_mcnemar(only_a, only_b),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report_a", type=Path)
    parser.add_argument("report_b", type=Path)
    parser.add_argument("--labels", nargs=2, default=["A", "B"])
    parser.add_argument("--tag", default=None)
    args = parser.parse_args()
    a, b = (json.loads(path.read_text()) for path in (args.report_a, args.report_b))
    table = compare(a["t2v_items"], b["t2v_items"])
    label_a, label_b = args.labels
    lines = [
        f"Text-to-video readers, {len(a['t2v_items'])} held-out prompts, {label_a} (`{args.report_a.name}`) "
        f"against {label_b} (`{args.report_b.name}`); exact McNemar test on the discordant prompts.",
        "",
        f"| attribute | {label_a} | {label_b} | right only with {label_a} | right only with {label_b} | p |",
        "|---|---|---|---|---|---|",
    ]
    for attribute, row in table.items():
        lines.append(
            f"| {attribute} | {row['accuracy_a']:.0%} | {row['accuracy_b']:.0%} | {row['only_a']} "
            f"| {row['only_b']} | {row['p']:.3f} |"
        )
    i2v = (a.get("i2v_psnr_db"), b.get("i2v_psnr_db"))
    if None not in i2v:
        lines += ["", f"I2V PSNR frames 1..16: {label_a} {i2v[0]:.2f} dB, {label_b} {i2v[1]:.2f} dB."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.tag:
        (RESULTS / f"{args.tag}.md").write_text(f"# {args.tag}\n\n" + text)


if __name__ == "__main__":
    main()
