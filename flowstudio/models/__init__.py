"""Which checkpoint a command uses: ``--model``, else ``$FLOWSTUDIO_MODEL``, else the packaged toy model.

The ShapeWorld toy model (``flowstudio/assets/toy-shapes``, a diffusers-format Wan2.2-TI2V-form
folder trained by ``flowstudio worlds train shapes``; docs/toy_model.md) ships inside the package, so
every command works with meaning on a machine with no weights. Real checkpoints are always local
folders given explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path

from flowstudio.errors import InputError

MODEL_ENV = "FLOWSTUDIO_MODEL"
TOY_MODEL = Path(__file__).resolve().parents[1] / "assets" / "toy-shapes"


def toy_model_available() -> bool:
    """Whether the packaged toy model is present (a source checkout before it shipped has none)."""
    return (TOY_MODEL / "model_index.json").is_file()


def resolve_model(model: str | os.PathLike[str] | None = None) -> Path:
    """``model`` if given, else ``$FLOWSTUDIO_MODEL``, else the packaged toy model.

    Raises:
        InputError: none of the three exists, saying what to pass.
    """
    if model is not None and str(model):
        return Path(model)
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    if toy_model_available():
        return TOY_MODEL
    raise InputError(
        f"no model given and the packaged toy model is missing ({TOY_MODEL}): pass --model PATH (a "
        f"local diffusers-format Wan2.2 TI2V folder) or set {MODEL_ENV}. For a quick try without real "
        "weights: `flowstudio models make-tiny outputs/tiny` (random weights)."
    )


TRAINING_SUMMARY = "training_summary.json"


def trained_size(model: str | os.PathLike[str] | None) -> tuple[int, int] | None:
    """``(height, width)`` a checkpoint was trained at, from its ``training_summary.json`` (toy models
    write one); ``None`` when the folder records none (real and tiny random checkpoints)."""
    import json

    if model is None:
        return None
    file = Path(model) / TRAINING_SUMMARY
    try:
        config = json.loads(file.read_text(encoding="utf-8")).get("config", {})
        size = int(config["height"]), int(config["width"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return size if min(size) > 0 else None
