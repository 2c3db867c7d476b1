"""Checkpoints of the trainer: where they live, what they hold, and the older formats they still read.

A checkpoint is one ``torch.save`` file, written atomically (a temporary file, then ``os.replace``), so an
interruption never corrupts the last good one::

    {"format": 2, "step": k, "models": {name: state_dict}, "optimizers": {name: state_dict},
     "rng": [per-process RNG states], "history": {metric: [value per step]}, "evals": [[step, value]], ...}

Under FSDP the models and optimizers are sharded: they go through ``accelerator.save_state`` into a
folder beside the file (``<file>.fsdp/``) and the file keeps the rest.

Read also:

* format 1, the toy trainer's ``state/<stage>.pt`` before this package
  (``{"model", "optimizer", "step", "losses", "evals"}``): one model and optimizer, loss history under
  ``losses`` (so runs started before the trainer existed resume);
* DualForce's ``checkpoints/step-N/`` folders written by ``accelerator.save_state`` alone (step from
  the folder name; no history).
"""

from __future__ import annotations

import logging
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

logger = logging.getLogger(__name__)

FORMAT = 2


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: an interrupted save never leaves a broken file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class CheckpointStore(Protocol):
    """Where the checkpoint of step ``k`` is written, and which one a run resumes from."""

    def path(self, step: int) -> Path: ...

    def latest(self) -> Path | None: ...


@dataclass(frozen=True)
class LatestFile:
    """One file, replaced at every save (the toy trainer's ``state/<stage>.pt``): constant disk use."""

    file: Path

    def path(self, step: int) -> Path:
        return self.file

    def latest(self) -> Path | None:
        return self.file if self.file.exists() else None


@dataclass(frozen=True)
class StepFolders:
    """``folder/step-N/state.pt``, every checkpoint kept (DualForce's ``checkpoints/step-N``)."""

    folder: Path

    def path(self, step: int) -> Path:
        return self.folder / f"step-{step}" / "state.pt"

    def steps(self) -> list[int]:
        """The steps that have a ``step-N`` folder, ascending (a state file or accelerate's folder)."""
        return sorted(
            int(m.group(1))
            for p in self.folder.glob("step-*")
            if (m := re.fullmatch(r"step-(\d+)", p.name)) and p.is_dir()
        )

    def latest(self) -> Path | None:
        steps = self.steps()
        if not steps:
            return None
        folder = self.path(steps[-1]).parent
        return folder / "state.pt" if (folder / "state.pt").exists() else folder  # a folder: accelerate's


def rng_state() -> dict[str, Any]:
    """This process's global random states (for step functions that draw from them, e.g. dropout)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def save(
    path: Path,
    accelerator,
    step: int,
    models: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    extra: dict[str, Any],
) -> None:
    """Write the checkpoint of ``step`` (every process must call it: RNG states are gathered)."""
    rngs = [rng_state()]
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        rngs = gather_object(rngs)
    fsdp = _is_fsdp(accelerator)
    if fsdp:  # sharded weights and optimizer states: accelerate writes one shard per process
        accelerator.save_state(str(path.with_name(path.name + ".fsdp")))
    if accelerator.is_main_process:
        payload = {
            "format": FORMAT,
            "step": step,
            "models": None if fsdp else {k: m.state_dict() for k, m in models.items()},
            "optimizers": None if fsdp else {k: o.state_dict() for k, o in optimizers.items()},
            "rng": rngs,
            **extra,
        }
        atomic_save(payload, path)
    accelerator.wait_for_everyone()


def read(path: Path, names: list[str]) -> dict[str, Any]:
    """A checkpoint file's contents in format 2's keys, without restoring anything (CPU tensors).

    ``names``: the models of the run reading it. A format-1 file holds one model and optimizer, filed
    under the one name (a run of several models cannot take it)."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if "format" in saved:
        return saved
    if len(names) != 1:  # format 1: the toy trainer's one-model stage file
        raise ValueError(f"{path} holds one model; this run trains {sorted(names)}")
    (name,) = names
    return {
        "step": saved["step"],
        "models": {name: saved["model"]},
        "optimizers": {name: saved["optimizer"]},
        "rng": None,
        "history": {"loss": list(saved["losses"])},
        "evals": saved.get("evals", []),
    }


def load(
    path: Path,
    accelerator,
    models: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
) -> dict[str, Any]:
    """Restore models, optimizers and this process's RNG state from ``path``; return the rest
    (``step``, ``history``, ``evals`` and whatever the client saved) in format 2's keys."""
    if path.is_dir():  # an accelerate save_state folder (DualForce before this package)
        accelerator.load_state(str(path))
        step = int(re.fullmatch(r"step-(\d+)", path.name).group(1))
        return {"step": step, "history": {}, "evals": []}
    saved = read(path, list(models))
    if saved["models"] is None:
        accelerator.load_state(str(path.with_name(path.name + ".fsdp")))
    else:
        missing = sorted(set(models) - set(saved["models"]))
        if missing:
            raise ValueError(f"{path} has no state for {missing} (it holds {sorted(saved['models'])})")
        for name, model in models.items():
            model.load_state_dict(saved["models"][name])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(saved["optimizers"][name])
    rngs = saved.get("rng")
    if rngs and len(rngs) == accelerator.num_processes:
        set_rng_state(rngs[accelerator.process_index])
    elif rngs:
        logger.warning(
            "%s was saved by %d processes, this run has %d: random states not restored",
            path,
            len(rngs),
            accelerator.num_processes,
        )
    rest = {k: v for k, v in saved.items() if k not in ("format", "models", "optimizers", "rng")}
    rest.setdefault("history", {})
    rest.setdefault("evals", [])
    return rest
