"""The board's loopback load (benchmarks/board_load.py) at test size: a real `board serve` process,
page views and votes at once, one submission scored meanwhile; no vote lost, no 5xx."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


def _script():
    path = Path(__file__).parents[1] / "benchmarks" / "board_load.py"
    spec = importlib.util.spec_from_file_location("board_load", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_vote_lost_under_a_small_load():
    script = _script()
    args = script.parser().parse_args(
        ["--requests", "60", "--concurrency", "10", "--cases", "5", "--frames", "5", "--size", "64"]
    )
    results = script.run(args)["results"]
    assert results["votes_answered_200"] > 0, results
    assert results["lost_votes"] == 0, results
    assert results["votes_stored"] == results["votes_answered_200"]
    assert results["errors"] == [] and results["transport_errors"] == 0, results
    assert results["submission_status"] == "scored", results
    assert (
        results["page_views"]
        + sum(n for label, n in results["responses"].items() if label.startswith("ballot"))
        == 60
    )
