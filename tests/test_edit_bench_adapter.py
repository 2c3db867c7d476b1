"""The editing engine runs as a benchmark method: `bench run --method flowstudio-edit:<name>`."""

from __future__ import annotations

import numpy as np
import pytest

from flowstudio.bench.methods import get_method
from flowstudio.errors import InputError


class FakeCase:
    id = "case-0"
    edit_type = "color"
    source_prompt = "a red bottle on a wooden table"
    target_prompt = "a blue bottle on a wooden table"

    def load_source(self) -> np.ndarray:
        return np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)

    def load_mask(self):
        return None


def test_engine_method_edits_a_case(tiny_checkpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWSTUDIO_MODEL", str(tiny_checkpoint))
    method = get_method("flowstudio-edit:flowedit")
    frames = method(FakeCase(), tmp_path, seed=0)
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
    assert method.settings["edit_method"] == "flowedit"


def test_engine_method_needs_a_model(monkeypatch, tmp_path):
    monkeypatch.delenv("FLOWSTUDIO_MODEL", raising=False)
    monkeypatch.setattr("flowstudio.models.TOY_MODEL", tmp_path / "no-toy-model")
    with pytest.raises(InputError, match="FLOWSTUDIO_MODEL"):
        get_method("flowstudio-edit:inversion")


def test_engine_method_defaults_to_the_packaged_toy_model(monkeypatch):
    from flowstudio.models import TOY_MODEL, toy_model_available

    monkeypatch.delenv("FLOWSTUDIO_MODEL", raising=False)
    if not toy_model_available():
        pytest.skip("no packaged toy model in this checkout")
    from flowstudio.edit.bench_adapter import bench_method

    assert bench_method("inversion").model_path == TOY_MODEL


def test_the_preset_method_refuses_while_no_preset_is_validated(tiny_checkpoint):
    from flowstudio.edit.bench_adapter import EngineMethod

    with pytest.raises(InputError, match="no editing preset is validated on this model"):
        EngineMethod("preset", tiny_checkpoint)
