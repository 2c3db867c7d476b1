"""``benchmarks/train_curves.py``: loss windows compared only over the steps every run has reached."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "train_curves.py"
spec = importlib.util.spec_from_file_location("train_curves", SCRIPT)
train_curves = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_curves)


def test_runs_are_compared_over_their_common_steps_in_whole_windows():
    result = train_curves.compare({"a": [2.0] * 250, "b": [1.0] * 100 + [0.5] * 200}, window=100)
    assert result["steps_compared"] == 200
    assert result["curves"]["a"] == [(100, 2.0), (200, 2.0)]
    assert result["curves"]["b"] == [(100, 1.0), (200, 0.5)]
    assert result["ratio_to_first_last_window"]["b"] == pytest.approx(0.25)
    with pytest.raises(SystemExit, match="fewer than one window"):
        train_curves.compare({"a": [1.0] * 50}, window=100)


def test_both_checkpoint_formats_give_their_losses(tmp_path):
    for fmt, payload in (
        ("2", {"format": 2, "step": 2, "history": {"loss": [3.0, 2.0]}}),
        ("1", {"step": 2, "losses": [3.0, 2.0], "model": {}, "optimizer": {}}),
    ):
        run = tmp_path / fmt
        (run / "state").mkdir(parents=True)
        torch.save(payload, run / "state" / "dit.pt")
        assert train_curves.load_losses(run, "dit") == [3.0, 2.0]
    with pytest.raises(SystemExit, match="no checkpoint"):
        train_curves.load_losses(tmp_path / "none", "dit")
