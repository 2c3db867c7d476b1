"""Sanity anchors of the editing benchmark: the ``identity`` and ``ground-truth`` methods on shapeworld-v1.

``identity`` returns the source unchanged (the no-edit lower bound: perfect preservation and motion,
no edit); ``ground-truth`` returns the exact target (the oracle upper bound). Every method's numbers
should fall between the two; a metric that does not separate them is not measuring the edit.

Writes ``benchmarks/results/bench_sanity_<method>.json`` (the full results files, leaderboard
format), ``bench_sanity.md`` and its plots ``bench_sanity_composite.png``, ``bench_sanity_metrics.png``.
Run folders (with the output clips) go to ``--work`` and are resumed when interrupted.

    python benchmarks/bench_sanity.py [--limit N] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

from flowstudio.bench import get_method, resolve_testset, run_benchmark
from flowstudio.bench.report import write_report

logger = logging.getLogger("bench_sanity")
RESULTS = Path(__file__).parent / "results"
METHODS = ("identity", "ground-truth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases (default: all 200)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "flowstudio-bench-sanity")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shapeworld-v1 set")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    testset = resolve_testset("shapeworld-v1", seed=args.seed, limit=args.limit)
    results = []
    for method in METHODS:
        result = run_benchmark(
            method,
            get_method(method),
            testset,
            args.work / f"{method}-{len(testset)}",
            extra_settings={"limit": args.limit, "reference_tier": False},
        )
        (RESULTS / f"bench_sanity_{method}.json").write_text(
            json.dumps(result, indent=1) + "\n", encoding="utf-8"
        )
        results.append(result)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_report(results, tmp)
        text = files["markdown"].read_text(encoding="utf-8")
        for name in ("composite", "metrics"):
            shutil.copy(Path(tmp) / f"{name}.png", RESULTS / f"bench_sanity_{name}.png")
            text = text.replace(f"({name}.png)", f"(bench_sanity_{name}.png)")
    header = (
        "Produced by `python benchmarks/bench_sanity.py`: `identity` is the no-edit lower bound, "
        "`ground-truth` the oracle upper bound.\n\n"
    )
    (RESULTS / "bench_sanity.md").write_text(text.replace("\n", "\n\n" + header, 1), encoding="utf-8")
    logger.info("wrote %s", RESULTS / "bench_sanity.md")


if __name__ == "__main__":
    main()
