"""Shared helpers for the DualForce training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowstudio.avatar.training.train import TrainConfig


def tiny_run(out: Path, steps: int, **fields: Any) -> TrainConfig:
    """A short training run on two synthetic clips, batch 2, no console logging; ``fields`` override."""
    return TrainConfig(
        **{
            "output_dir": str(out),
            "steps": steps,
            "batch_size": 2,
            "log_every": 100,
            "dataset_size": 2,
            **fields,
        }
    )
