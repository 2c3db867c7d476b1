"""Training-free video editing on the one sampling loop.

Methods (one file each): the baseline inversion editor and its RF-Solver / FireFlow variants
(:mod:`~flowstudio.edit.inversion`), FlowEdit (:mod:`~flowstudio.edit.flowedit`). Controls,
composable with every method: feature injection (:mod:`~flowstudio.edit.injection`), attention
K/V sharing (:mod:`~flowstudio.edit.attention_share`), masked latent blending
(:mod:`~flowstudio.edit.blending`, masks in :mod:`~flowstudio.edit.masks`), noise reschedule
(:mod:`~flowstudio.edit.reschedule`). Presets in :mod:`~flowstudio.edit.presets`: benchmark-chosen
with their evidence, and unavailable until a benchmark run validates them (none is on the shipped
toy model), so pass explicit options:

    from flowstudio.edit import edit
    result = edit("bag.mp4", source_prompt="a red bag", target_prompt="a blue bag",
                  model="Wan2.2-TI2V-5B-Diffusers", method="flowedit", steps=30, out="outputs/blue.mp4")
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use (PEP 562) so that `flowstudio --help` does not pay for torch and diffusers.
_EXPORTS = {
    "EditResult": "api",
    "edit": "api",
    "depends_on_seed": "api",
    "resolve_settings": "api",
    "write_outputs": "api",
    "AttentionShareConfig": "attention_share",
    "BlendConfig": "blending",
    "FlowEditConfig": "flowedit",
    "InjectionConfig": "injection",
    "MemoryEstimate": "memory",
    "estimate_memory": "memory",
    "PRESETS": "presets",
    "bench_method": "bench_adapter",
    "RescheduleConfig": "reschedule",
    "METHODS": "settings",
    "EditSettings": "settings",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flowstudio.edit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flowstudio.edit.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "METHODS",
    "PRESETS",
    "AttentionShareConfig",
    "BlendConfig",
    "EditResult",
    "EditSettings",
    "FlowEditConfig",
    "InjectionConfig",
    "MemoryEstimate",
    "RescheduleConfig",
    "depends_on_seed",
    "edit",
    "estimate_memory",
    "resolve_settings",
    "write_outputs",
]
