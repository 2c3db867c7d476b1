"""benchmarks/toy_quality_compare.py: the exact McNemar test and the pairing of prompts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "toy_quality_compare.py"
spec = importlib.util.spec_from_file_location("toy_quality_compare", SCRIPT)
compare_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_module)


def _item(prompt: str, color: bool, shape: bool, background: bool) -> dict:
    def read(right: bool, value: str) -> dict:
        return {"expected": value, "read": value if right else "other"}

    return {
        "prompt": prompt,
        "color": read(color, "red"),
        "shape": read(shape, "ball"),
        "background": read(background, "sky"),
    }


def test_exact_mcnemar_values():
    assert compare_module.exact_mcnemar(0, 0) == 1.0
    assert compare_module.exact_mcnemar(22, 11) == pytest.approx(0.0801, abs=1e-3)  # binomial, two-sided
    assert compare_module.exact_mcnemar(11, 22) == compare_module.exact_mcnemar(22, 11)
    assert compare_module.exact_mcnemar(6, 0) == pytest.approx(2 / 64)
    assert compare_module.exact_mcnemar(5, 5) == 1.0


def test_compare_counts_discordant_prompts_and_refuses_other_prompts():
    a = [_item("p1", True, True, False), _item("p2", True, False, True), _item("p3", False, False, True)]
    b = [_item("p1", False, True, True), _item("p2", True, False, True), _item("p3", False, True, True)]
    table = compare_module.compare(a, b)
    assert (table["color"]["only_a"], table["color"]["only_b"]) == (1, 0)
    assert (table["shape"]["only_a"], table["shape"]["only_b"]) == (0, 1)
    assert (
        table["background"]["accuracy_a"] == pytest.approx(2 / 3) and table["background"]["accuracy_b"] == 1.0
    )
    with pytest.raises(SystemExit, match="different prompts"):
        compare_module.compare(a, b[::-1])
