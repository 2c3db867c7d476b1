"""Editing benchmark: test-set manifests, offline and reference metric tiers, one-command runs, reports.

    from flowstudio.bench import get_method, resolve_testset, run_benchmark
    testset = resolve_testset("shapeworld-v1")           # generated once into the cache, 200 cases
    results = run_benchmark("identity", get_method("identity"), testset, "runs/identity")

See ``docs/guide_benchmark.md``.
"""

from __future__ import annotations

from flowstudio.bench.composite import DEFAULT_WEIGHTS, composite_score, fit_weights, read_ratings
from flowstudio.bench.manifest import (
    Case,
    ManifestError,
    TestSet,
    load_testset,
    record_hashes,
    write_manifest,
)
from flowstudio.bench.methods import EditMethod, FolderMethod, available_methods, get_method, register_method
from flowstudio.bench.runner import run_benchmark
from flowstudio.bench.scoring import score_case
from flowstudio.bench.sets import make_ecommerce_template, make_shapeworld, resolve_testset

__all__ = [
    "DEFAULT_WEIGHTS",
    "Case",
    "EditMethod",
    "FolderMethod",
    "ManifestError",
    "TestSet",
    "available_methods",
    "composite_score",
    "fit_weights",
    "get_method",
    "load_testset",
    "make_ecommerce_template",
    "make_shapeworld",
    "read_ratings",
    "record_hashes",
    "register_method",
    "resolve_testset",
    "run_benchmark",
    "score_case",
    "write_manifest",
]
