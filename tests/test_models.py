"""Model resolution: --model, then $FLOWSTUDIO_MODEL, then the packaged toy model."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowstudio import models
from flowstudio.errors import InputError


def test_explicit_then_environment_then_toy(tmp_path: Path, monkeypatch):
    toy = tmp_path / "toy"
    toy.mkdir()
    (toy / "model_index.json").write_text("{}")
    monkeypatch.setattr(models, "TOY_MODEL", toy)
    monkeypatch.delenv(models.MODEL_ENV, raising=False)
    assert models.resolve_model(None) == toy
    monkeypatch.setenv(models.MODEL_ENV, str(tmp_path / "env"))
    assert models.resolve_model(None) == tmp_path / "env"
    assert models.resolve_model(tmp_path / "given") == tmp_path / "given"


def test_missing_everything_says_what_to_pass(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(models, "TOY_MODEL", tmp_path / "absent")
    monkeypatch.delenv(models.MODEL_ENV, raising=False)
    with pytest.raises(InputError, match="--model PATH"):
        models.resolve_model(None)
