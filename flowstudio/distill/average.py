"""Average the transformer weights of exported students ("model soup", Wortsman et al. 2022).

Students distilled from the same teacher start from the same weights, so their fine-tunes stay close
enough that a weighted mean of their parameters is itself a working student; on the toy it trades one
student's strengths against another's (docs/findings_distill.md, "Averaged students"). The result is an
ordinary exported student: the first folder's files (text encoder, VAE, scheduler, ``distill.json``)
with the averaged transformer, and ``average.json`` naming the sources and weights.

Only students meant for the same sampling can be averaged: their ``distill.json`` (steps, guidance,
shift, sampler), transformer config and weight files (names, keys, shapes) must agree. Weight files
are averaged one at a time (a sharded real-scale transformer never needs two shards of one source in
memory), accumulated in float32 and stored in the first source's dtype.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from flowstudio.distill.export import STUDENT_FILE, student_settings
from flowstudio.errors import InputError

AVERAGE_FILE = "average.json"
_IGNORED_CONFIG_KEYS = ("_name_or_path", "_diffusers_version")


def _weight_files(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "transformer").glob("*.safetensors"))


def _transformer_config(folder: Path) -> dict:
    config = json.loads((folder / "transformer" / "config.json").read_text())
    return {k: v for k, v in config.items() if k not in _IGNORED_CONFIG_KEYS}


def check_students(folders: list[Path]) -> None:
    """Refuse, naming the folder and what differs, unless every folder is an exported student with
    the first one's sampling settings, transformer config and weight files."""
    if len(folders) < 2:
        raise InputError("average: give at least two student folders")
    for folder in folders:
        if student_settings(folder) is None:
            raise InputError(
                f"average: {folder} has no {STUDENT_FILE}; give folders exported by `flowstudio distill` "
                "(RUN/student or RUN/evaluated/step_N)"
            )
        if not (folder / "transformer" / "config.json").is_file() or not _weight_files(folder):
            raise InputError(f"average: {folder}/transformer has no config.json or no .safetensors weights")
    first = folders[0]
    readers = {
        STUDENT_FILE: student_settings,
        "transformer/config.json": _transformer_config,
        "transformer weight files": _weight_files,
    }
    reference = {what: read(first) for what, read in readers.items()}
    for folder in folders[1:]:
        for what, read in readers.items():
            if read(folder) != reference[what]:
                raise InputError(
                    f"average: {folder} and {first} differ in {what}; only students of the same "
                    "architecture meant for the same sampling can be averaged"
                )


def parse_weights(text: str) -> list[float]:
    """``"0.75,0.25"`` -> ``[0.75, 0.25]``; anything else is refused with the expected form."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise InputError(
            f"--weights: expected comma-separated numbers such as 0.75,0.25, got {text!r}"
        ) from None


def _normalised(weights: list[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise InputError(f"average: {len(weights)} weights for {count} students; give one weight per student")
    if any(not w >= 0 for w in weights) or sum(weights) <= 0:
        raise InputError(f"average: weights must be >= 0 with a positive sum, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def _open(path: Path):
    """A safetensors reader; a damaged file is refused with its name."""
    try:
        return safe_open(str(path), framework="pt")
    except Exception as error:  # safetensors raises its own error types for a truncated or foreign file
        raise InputError(f"average: cannot read {path} ({error}); re-export that student") from None


def _average_file(folders: list[Path], handles: list, shares: list[float], target: Path) -> None:
    """One weight file: the weighted mean of every tensor, accumulated in float32."""
    keys = set(handles[0].keys())
    for folder, handle in zip(folders[1:], handles[1:], strict=True):
        if set(handle.keys()) != keys:
            raise InputError(
                f"average: {folder}/transformer/{target.name} holds other tensors than {folders[0]}'s"
            )
    mixed: dict[str, torch.Tensor] = {}
    for key in sorted(keys):
        tensors = [h.get_tensor(key) for h in handles]
        if any(t.shape != tensors[0].shape for t in tensors):
            raise InputError(f"average: tensor {key!r} of {target.name} has different shapes across students")
        total = sum(share * t.float() for share, t in zip(shares, tensors, strict=True))
        mixed[key] = total.to(tensors[0].dtype)
    save_file(mixed, str(target), metadata=handles[0].metadata())


def average_students(folders: list[Path], out: Path, weights: list[float] | None = None) -> Path:
    """Write ``out``: the weighted mean of ``folders``' transformers (weights normalised to sum 1;
    default equal) in an exported-student folder. ``out`` must not exist (nothing is overwritten);
    it is written atomically (a temporary folder, then a rename)."""
    folders = [Path(f) for f in folders]
    out = Path(out)
    check_students(folders)
    shares = _normalised(weights, len(folders))
    if out.exists():
        raise InputError(f"average: {out} exists; choose a new folder (nothing is overwritten)")
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    transformer_dir = (folders[0] / "transformer").resolve()

    def skip(directory: str, names: list[str]) -> list[str]:
        """The transformer's weights (rewritten below) and an earlier average's record."""
        if Path(directory).resolve() == transformer_dir:
            return [n for n in names if n.endswith(".safetensors")]
        return [n for n in names if n == AVERAGE_FILE]

    shutil.copytree(folders[0], tmp, ignore=skip)
    try:
        for name in _weight_files(folders[0]):
            with ExitStack() as stack:
                handles = [stack.enter_context(_open(f / "transformer" / name)) for f in folders]
                _average_file(folders, handles, shares, tmp / "transformer" / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a refused or interrupted average leaves nothing behind
        raise
    (tmp / AVERAGE_FILE).write_text(
        json.dumps(
            {"sources": [{"folder": str(f), "weight": s} for f, s in zip(folders, shares, strict=True)]},
            indent=2,
        )
    )
    os.replace(tmp, out)
    return out
