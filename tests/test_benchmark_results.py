"""The benchmarks' shared results writer and the pair-stage comparison's variants."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import _results as a sibling module


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_carry_the_machine_and_both_files_are_written(tmp_path):
    results = _load("_results")
    markdown = results.write_results(
        "demo", {"settings": {"n": 3}, "rows": [{"x": 1.5}]}, ["# t", "", "| a |"], tmp_path
    )
    data = json.loads((tmp_path / "demo.json").read_text())
    assert data["settings"] == {"n": 3} and data["rows"] == [{"x": 1.5}]
    assert {"platform", "cpus", "threads", "torch", "flowstudio"} <= set(data["machine"])
    assert markdown.read_text() == "# t\n\n| a |\n"


def test_a_pair_variant_changes_only_what_it_names():
    compare = _load("data_pairs_compare")
    from flowstudio.data.config import load_build_config

    base = load_build_config(Path(__file__).resolve().parents[1] / "configs" / "data" / "shapeworld.yaml")
    label, changes = compare.parse_variant("student: model=/runs/s/student; edit_options.steps=null")
    assert label == "student" and changes == {"model": "/runs/s/student", "edit_options.steps": None}
    config = compare.apply(base, changes)
    assert config.model == "/runs/s/student" and "steps" not in config.edit_options
    assert config.edit_options["blend"] == base.edit_options["blend"] and base.edit_options["steps"] == 10
    assert compare.apply(base, compare.parse_variant("bf16:dtype=bfloat16")[1]).dtype == "bfloat16"
    assert compare.parse_variant("float32") == ("float32", {})
    with pytest.raises(SystemExit, match="key=value"):
        compare.parse_variant("broken:model")


def test_audio_paths_probe_changes_only_which_tower_hears(tmp_path):
    """benchmarks/avatar_audio_paths.py: a copy with one tower deaf has the same weights, and that tower
    (only) reads the null token whatever the audio."""
    import torch

    from flowstudio.avatar.model.dualforce import DualForceModel

    probe = _load("avatar_audio_paths")
    packaged = Path(__file__).resolve().parents[1] / "flowstudio" / "assets" / "dualforce-toy"
    deaf = probe.with_paths(packaged, "video", tmp_path)
    assert (deaf / "model.safetensors").read_bytes() == (packaged / "model.safetensors").read_bytes()
    model = DualForceModel.from_pretrained(deaf)
    assert model.config.audio.paths == "video" and model.audio.paths == "video"
    features = torch.randn(1, 16, model.config.audio.feature_dim)
    ids = torch.ones(16, dtype=torch.long)
    with torch.no_grad():
        video_a, struct_a = model.audio(features, ids)
        video_b, struct_b = model.audio(torch.randn_like(features), ids)
    assert torch.equal(struct_a, struct_b)  # the structure tower hears nothing
    assert not torch.allclose(video_a, video_b)  # the video tower still hears the audio
