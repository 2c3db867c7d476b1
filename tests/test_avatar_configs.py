"""Every DualForce run YAML parses, and the packaged toy model is what its recipe builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowstudio.avatar.model.config import DualForceConfig, load_config
from flowstudio.avatar.training.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
RUNS = sorted((ROOT / "configs" / "dualforce").rglob("*.yaml"))
RUNS = [p for p in RUNS if "accelerate" not in p.name]


@pytest.mark.parametrize("path", RUNS, ids=lambda p: str(p.relative_to(ROOT)))
def test_run_yaml_parses(path: Path):
    config, rest = load_config(path)
    assert isinstance(config, DualForceConfig)
    TrainConfig.from_dict(rest.get("train", {}))


def test_packaged_toy_is_its_recipe():
    """configs/dualforce/toy_packaged.yaml builds the shipped model's architecture and sampler defaults
    (the structure statistics are measured from data when training starts, so they are left out)."""
    built, _ = load_config(ROOT / "configs" / "dualforce" / "toy_packaged.yaml")
    shipped = DualForceConfig.from_dict(
        json.loads((ROOT / "flowstudio" / "assets" / "dualforce-toy" / "config.json").read_text())
    )
    a, b = built.to_dict(), shipped.to_dict()
    for side in (a, b):
        side["structure"].pop("mean"), side["structure"].pop("std")
    assert a == b
    assert shipped.forcing.context_sigma == 0.5 and shipped.forcing.audio_guidance == 4.0
