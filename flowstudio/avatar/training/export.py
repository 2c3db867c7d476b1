"""Any checkpoint of a DualForce run as a model folder (``flowstudio avatar export``).

A run writes ``output_dir/checkpoints/step-N/state.pt`` every ``save_every`` steps and the model folder
only at the end (``final``, and ``final-raw`` beside it when the run keeps an EMA). Choosing a checkpoint
on held-out samples (the toy's samples swing from one checkpoint to the next) needs the others as
folders too: the weights come from the state file, the config from ``output_dir/model_config.json``
(written at the start of the run, with the structure statistics it computed).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from flowstudio.avatar.model.config import DualForceConfig
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.errors import CheckpointError, InputError
from flowstudio.train import StepFolders


def checkpoint_steps(run_dir: str | Path) -> list[int]:
    """The steps a run has state files of (``checkpoints/step-N/state.pt``), ascending."""
    store = StepFolders(Path(run_dir) / "checkpoints")
    return [step for step in store.steps() if store.path(step).is_file()]


def export_checkpoint(run_dir: str | Path, step: int | None, out: str | Path, *, raw: bool = False) -> Path:
    """Write the model of ``run_dir``'s checkpoint at ``step`` (``None``: the newest) to ``out``.

    ``raw``: the trained weights even where the run keeps an EMA (by default the EMA when there is one).

    Raises:
        InputError: the run has no such checkpoint (the message lists those it has).
        CheckpointError: ``model_config.json`` is missing (a run from before 2026-12-05: export with the
            run's final ``config.json``) or the state file does not fit the config.
    """
    root = Path(run_dir)
    steps = checkpoint_steps(root)
    if not steps:
        raise InputError(
            f"{root} has no checkpoints (checkpoints/step-N/state.pt): is it a run's output_dir?"
        )
    if step is None:
        step = steps[-1]
    if step not in steps:
        raise InputError(f"{root} has no checkpoint of step {step}; it has steps {steps}")
    config_path = root / "model_config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{config_path} is missing (written by runs since 2026-12-05): copy final/config.json there"
        )
    config = DualForceConfig.from_dict(json.loads(config_path.read_text()))
    state = torch.load(StepFolders(root / "checkpoints").path(step), map_location="cpu", weights_only=False)
    if state.get("models") is None:
        raise InputError(f"step {step} of {root} is an FSDP shard set: export it on the training machines")
    averages = state.get("ema") or {}
    weights = state["models"]["model"] if raw or "model" not in averages else averages["model"]
    model = DualForceModel(config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"step {step} of {root} does not fit {config_path}: {err}") from err
    return model.save_pretrained(out)
