"""The one metric registry and results format: each metric declared once, scoring picks exactly the
metrics whose inputs (and weights) are there, a new metric is one declaration, old results files read."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

import flowstudio
from flowstudio import metrics
from flowstudio.bench.metrics import registry as weights_registry
from flowstudio.metrics import Inputs, Metric, Skip, for_suite, score_case
from flowstudio.metrics.results import RESULTS_FORMAT, read_results, write_results

PACKAGE = Path(flowstudio.__file__).parent
LIBRARY = PACKAGE / "metrics" / "library"
REPO = PACKAGE.parent


@pytest.fixture(autouse=True)
def _no_user_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for spec in weights_registry.WEIGHTS.values():
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.delenv(weights_registry.CONFIG_ENV, raising=False)
    monkeypatch.setenv(weights_registry.ROOT_ENV, str(tmp_path / "no-weights-here"))


def _declared_names() -> list[str]:
    """Names in ``metric("name", ...)`` / ``Metric("name", ...)`` calls of the library files."""
    found = []
    for file in sorted(LIBRARY.glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) in ("metric", "Metric")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.append(node.args[0].value)
    return found


def test_each_metric_is_declared_once_in_the_library():
    declared = _declared_names()
    assert len(declared) == len(set(declared)), sorted(n for n in declared if declared.count(n) > 1)
    assert set(declared) == set(metrics.all_metrics())
    with pytest.raises(ValueError, match="already declared"):
        metrics.register(metrics.get("gt_psnr"))
    for m in metrics.all_metrics().values():
        assert m.version and m.description and m.suites, m.name
        assert (m.weights is not None) == (m.tier == "reference"), m.name
    # every weights entry a metric names exists, and every entry is used by some metric
    used = {m.weights for m in metrics.all_metrics().values() if m.weights}
    assert used == set(weights_registry.WEIGHTS)


def _string_literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    }


@pytest.mark.parametrize(
    "module",
    [
        "metrics/scoring.py",
        "metrics/results.py",
        "bench/scoring.py",
        "bench/runner.py",
        "bench/report.py",
        "avatar/evaluation/evaluate.py",
    ],
)
def test_scoring_code_names_no_metric(module):
    named = _string_literals(PACKAGE / module) & set(metrics.all_metrics())
    assert not named, f"{module} names metrics {sorted(named)}: declare them in flowstudio/metrics/library"


def _frames(seed: int, t: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, 32, 32, 3)).astype(np.uint8)


def _edit_values() -> dict[str, object]:
    region = np.zeros((3, 32, 32), bool)
    region[:, 8:24, 8:24] = True
    return {
        "output": _frames(1),
        "source": _frames(2),
        "truth": _frames(3),
        "edit_region": region,
        "kept_region": ~region,
        "prompt": "a red cup",
        "attributes": {},
    }


@pytest.mark.parametrize(
    "absent", [(), ("truth",), ("edit_region",), ("kept_region",), ("truth", "kept_region", "edit_region")]
)
def test_scoring_picks_exactly_the_metrics_whose_inputs_are_present(absent):
    values = {k: v for k, v in _edit_values().items() if k not in absent}
    scores = score_case("edit", Inputs(values, {k: f"no {k} here" for k in absent}))
    expected = {
        m.name
        for m in for_suite("edit", level="case", tier="offline")
        if set(m.needs) <= set(values) and m.name != "attr_acc"  # attr_acc: not a ShapeWorld case
    }
    assert set(scores["metrics"]) == expected
    assert set(scores["metrics"]) | set(scores["skipped"]) == {
        m.name for m in for_suite("edit", level="case")
    }
    for name, reason in scores["skipped"].items():
        missing = [n for n in metrics.get(name).needs if n in absent]
        if metrics.get(name).tier == "reference":
            assert reason == "reference tier not requested (--reference)"
        elif missing:
            assert reason == f"no {missing[0]} here", name
    assert "ShapeWorld" in scores["skipped"]["attr_acc"]


def test_absent_reference_weights_are_reported_with_the_reason():
    from flowstudio.bench.metrics.reference import ReferenceScorer

    scores = score_case(
        "edit", Inputs(_edit_values(), reference=ReferenceScorer(config={})), tier="reference"
    )
    assert not scores["metrics"]
    for name in ("clip_text", "clip_frame", "dino_structure", "lpips_bg"):
        reason = scores["skipped"][name]
        weights = metrics.get(name).weights
        assert (
            f"needs {weights} weights (not available locally)" in reason and "FLOWSTUDIO_WEIGHTS_" in reason
        )


@pytest.fixture
def dummy_metrics():
    """A case-level and a set-level metric declared in the test, as a library file would."""
    declared = [
        Metric(
            "dummy_mean_level",
            ("edit", "avatar"),
            "offline",
            None,
            "levels",
            "1",
            "mean 8-bit level of the output",
            needs=("output",),
            compute=lambda x: float(x["output"].mean()),
        ),
        Metric(
            "dummy_needs_audio",
            ("edit", "avatar"),
            "offline",
            None,
            "",
            "1",
            "a metric the editing suite never has the input for",
            needs=("output", "audio"),
            compute=lambda x: 1.0,
        ),
        Metric(
            "dummy_set_frames",
            ("edit",),
            "offline",
            None,
            "frames",
            "1",
            "frames over the set",
            needs=("output",),
            level="set",
            collect=lambda x: len(x["output"]),
            compute=lambda parts: float(sum(parts)),
        ),
    ]
    for m in declared:
        metrics.register(m)
    yield declared
    for m in declared:
        metrics.unregister(m.name)


def test_a_new_metric_is_scored_without_touching_scoring_code(dummy_metrics, tmp_path):
    from flowstudio.bench import get_method, make_shapeworld, run_benchmark

    testset = make_shapeworld(tmp_path / "sw", seed=2, num_cases=2, num_frames=5, height=64, width=64)
    results = run_benchmark("identity", get_method("identity"), testset, tmp_path / "run", progress=False)
    case = results["cases"][0]
    source = testset.cases[0].load_source()
    assert case["metrics"]["dummy_mean_level"] == pytest.approx(float(source.mean()))
    assert case["skipped"]["dummy_needs_audio"] == "the case has no audio"
    assert results["summary"]["dummy_mean_level"]["n"] == 2
    assert results["summary"]["dummy_set_frames"] == {"value": 10.0}
    assert results["metrics"]["dummy_mean_level"]["unit"] == "levels"
    assert results["settings"]["metric_versions"]["dummy_mean_level"] == "1"


def test_a_compute_returning_none_is_an_error_not_a_default():
    metrics.register(
        Metric("dummy_none", ("edit",), "offline", None, "", "1", "broken", compute=lambda x: None)
    )
    try:
        with pytest.raises(TypeError, match="Skip"):
            score_case("edit", Inputs(_edit_values()))
    finally:
        metrics.unregister("dummy_none")


def test_a_declared_metric_without_a_scorer_is_unavailable_with_the_reason():
    metrics.register(Metric("dummy_todo", ("avatar",), "offline", None, "", "1", "not written yet"))
    try:
        scores = score_case("avatar", Inputs({"output": _frames(0)}))
        assert "not implemented" in scores["skipped"]["dummy_todo"]
    finally:
        metrics.unregister("dummy_todo")


def test_skip_is_reported_not_a_number():
    metrics.register(
        Metric("dummy_skip", ("edit",), "offline", None, "", "1", "skips", compute=lambda x: Skip("why not"))
    )
    try:
        scores = score_case("edit", Inputs(_edit_values()))
        assert scores["skipped"]["dummy_skip"] == "why not" and "dummy_skip" not in scores["metrics"]
    finally:
        metrics.unregister("dummy_skip")


def test_committed_old_results_files_read_in_the_one_format(tmp_path):
    # the first bench_sanity_identity.json (written before the one results format; its first 3 cases
    # kept): benchmarks/results now holds a re-run in the current format
    file = REPO / "tests/data/old_format_bench_identity.json"
    bench = read_results(file)
    old = json.loads(file.read_text())
    assert bench["format"] == RESULTS_FORMAT and bench["kind"] == "edit"
    assert bench["summary"]["gt_psnr"] == old["summary"]["all"]["gt_psnr"]
    assert bench["groups"]["edit_type"] == old["summary"]["by_edit_type"]
    assert bench["summary"]["fvd"] == old["summary"]["set_metrics"]["fvd"]
    assert len(bench["cases"]) == len(old["cases"])
    avatar = read_results(REPO / "benchmarks/results/avatar_toy_eval.json")
    old = json.loads((REPO / "benchmarks/results/avatar_toy_eval.json").read_text())
    assert avatar["kind"] == "avatar" and avatar["summary"] == old["summary"]
    first = old["clips"][0]["metrics"]
    numbers = {k: v for k, v in first.items() if not isinstance(v, dict)}
    assert avatar["cases"][0]["metrics"] == numbers
    assert set(avatar["cases"][0]["skipped"]) == set(first) - set(numbers)
    # written and read back unchanged
    path = write_results(avatar, tmp_path / "r.json")
    assert read_results(path) == avatar
