"""benchmarks/toy_data_path.py: both transformer batch sources and the batched cache, timed in one run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_data_path_benchmark_times_every_setting_and_writes_its_files(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling _results
    spec = importlib.util.spec_from_file_location("toy_data_path", BENCHMARKS / "toy_data_path.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["--batches", "4", "16", "--cache-clips", "5", "--cache-batches", "1", "2", "--encode-clips", "2"]
    record = script.main([*argv, "--repeats", "1", "--results", str(tmp_path), "--tag", "dp"])
    assert [row["batch"] for row in record["transformer_batches"]] == [4, 16]
    for row in record["transformer_batches"]:
        assert row["host_s"] > 0 and row["device_s"] > 0
        assert abs(row["ratio"] - row["host_s"] / row["device_s"]) < 1e-9
    cache = record["latent_cache"]
    assert [row["cache_batch"] for row in cache] == [1, 2] and cache[0]["ratio"] == 1.0
    assert all(row["clips_per_s"] > 0 for row in cache) and record["render_s_per_clip"] > 0
    saved = json.loads((tmp_path / "dp.json").read_text())
    assert saved["settings"]["batches"] == [4, 16]
    assert "| 16 |" in (tmp_path / "dp.md").read_text()
