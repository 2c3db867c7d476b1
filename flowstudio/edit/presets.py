"""E-commerce editing presets: ``product-replace``, ``background``, ``style``, ``color``, ``material``.

Chosen by ``benchmarks/edit_toy.py`` on the shipped ShapeWorld toy model (100 held-out ground-truth
pairs, 20 per edit type, 20 steps; ``benchmarks/results/edit_toy.md``) with its rule
(``choose_per_type``): among the configurations whose attribute accuracy on that edit type is
statistically equal to the best, the highest preservation PSNR outside the edit (style: PSNR against
the true edit) wins.

The same configuration won all five types: FlowEdit at 10 steps editing over the last 7, source /
target CFG 1.5 / 5, K/V sharing (concat) in the first half, blending with the automatic
cross-attention mask and the source's pixels composited back outside it. It keeps 48-52 dB outside
the edit against the references' 19-21 dB (the toy VAE caps any latent-space method near 19 dB),
at half the model rows of the baseline editor.

Read with care: the toy model follows text weakly, so *every* configuration edits the attribute in at
most 30% of pairs, and accuracy differences between configurations are within noise; the choice is
effectively made on preservation. On style the composite setting read the new style in 15% of pairs
against 25-30% for settings without compositing (within noise on 20 pairs, but it points the same
way: compositing can hold a global edit back). Re-run the benchmark on a stronger model before
trusting these for production; `--steps` and the options below override a preset.
"""

from __future__ import annotations

from typing import Any

from flowstudio.edit.attention_share import AttentionShareConfig
from flowstudio.edit.blending import BlendConfig
from flowstudio.edit.flowedit import FlowEditConfig
from flowstudio.errors import InputError

#: The benchmark's ``flowedit-half-steps+kv+auto-blend+composite`` at its 20-step setting.
_CHOSEN: dict[str, Any] = {
    "method": "flowedit",
    "steps": 10,
    "source_guidance": 1.5,
    "target_guidance": 5.0,
    "flowedit": FlowEditConfig(n_max=7, n_min=0, n_avg=1),
    "attention_share": AttentionShareConfig(mode="concat", start=0.0, end=0.5),
    "blend": BlendConfig(strength=1.0, start=0.0, end=1.0, feather=1, pixel_composite=True),
}

#: Preset name -> :class:`~flowstudio.edit.settings.EditSettings` field values (see above).
PRESETS: dict[str, dict[str, Any]] = {
    name: dict(_CHOSEN) for name in ("product-replace", "background", "style", "color", "material")
}


def preset_values(name: str) -> dict[str, Any]:
    """Field values of preset ``name``; unknown names raise a clear :class:`InputError`."""
    try:
        return dict(PRESETS[name]) | {"preset": name}
    except KeyError:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
