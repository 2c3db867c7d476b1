"""The editing engine as benchmark methods: ``flowstudio bench run --method flowstudio-edit:<name>``.

``<name>`` is an edit method (``inversion``, ``flowedit``, ``rf-solver``, ``fireflow``) or
``preset`` (the preset matching each case's edit type; only validated presets run, see
:mod:`flowstudio.edit.presets`: a case whose type has none raises :class:`InputError`). The model
comes from ``$FLOWSTUDIO_MODEL`` (a local checkpoint folder), loaded once per run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

MODEL_ENV = "FLOWSTUDIO_MODEL"
# benchmark edit types -> editing presets
PRESET_FOR_EDIT_TYPE = {
    "product": "product-replace",
    "color": "color",
    "material": "material",
    "background": "background",
    "style": "style",
}


class EngineMethod:
    """``method(case, out_dir, seed) -> uint8 (T, H, W, 3)`` running :func:`flowstudio.edit.edit`."""

    def __init__(self, method: str, model: str | os.PathLike, **options: Any) -> None:
        from flowstudio.edit.settings import METHODS

        if method != "preset" and method not in METHODS:
            raise ValueError(f"unknown edit method {method!r}; choose one of preset, {', '.join(METHODS)}")
        if method == "preset":
            from flowstudio.edit.presets import RESULTS, preset_available
            from flowstudio.errors import InputError

            if not any(preset_available(name) for name in PRESET_FOR_EDIT_TYPE.values()):
                raise InputError(
                    f"flowstudio-edit:preset: no editing preset is validated on this model (see {RESULTS}); "
                    f"use flowstudio-edit:<method> with one of {', '.join(METHODS)}"
                )
        self.method = method
        self.model_path = Path(model)
        self.options = options
        self._pipe = None
        self.settings = {
            "engine": "flowstudio.edit",
            "edit_method": method,
            "model": str(self.model_path),
            **options,
        }
        self.description = f"flowstudio edit engine, method {method}"

    def _pipeline(self):
        if self._pipe is None:
            from flowstudio.pipeline import WanVideoPipeline

            self._pipe = WanVideoPipeline.from_pretrained(
                self.model_path, device=self.options.get("device", "cpu")
            )
        return self._pipe

    def __call__(self, case: Any, out_dir: Path, seed: int) -> np.ndarray:
        from flowstudio.edit.api import edit

        preset = PRESET_FOR_EDIT_TYPE.get(case.edit_type) if self.method == "preset" else None
        method = {} if self.method == "preset" else {"method": self.method}
        mask = case.load_mask() if hasattr(case, "load_mask") else None
        result = edit(
            case.load_source(),
            source_prompt=case.source_prompt,
            target_prompt=case.target_prompt,
            model=self._pipeline(),
            preset=preset,
            mask=mask,
            seed=seed,
            **method,
            # scored against the case's own files: edit at the case's size, not the model's trained one
            **({"size": "native"} | {k: v for k, v in self.options.items() if k != "device"}),
        )
        return result.frames


def bench_method(name: str) -> EngineMethod:
    """Factory the benchmark calls for ``flowstudio-edit:<name>``."""
    from flowstudio.models import resolve_model

    return EngineMethod(name, str(resolve_model(None)))  # $FLOWSTUDIO_MODEL, else the toy model
