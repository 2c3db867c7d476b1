"""E-commerce editing presets: ``product-replace``, ``background``, ``style``, ``color``, ``material``.

PROVISIONAL DEFAULTS. The issue asks for defaults chosen by ``benchmarks/edit_toy.py`` on the
trained ShapeWorld toy model; that model is not trained yet, so these values are reasoned starting
points (from the papers' recommended settings and what each edit type must keep), not measured
choices. Re-tune them with the benchmark once the toy model ships and record the numbers in
``docs/guide_edit.md``.

Reasoning per preset:

- ``color`` / ``material``: change appearance inside the object, keep shape, motion and background:
  FlowEdit (no inversion error) with a late start (``n_max`` ~ 70% of the steps keeps the layout),
  K/V sharing (concat) in the first half for identity, blending with an automatic mask and the
  source's pixels composited back outside it.
- ``product-replace``: a new shape needs freedom in the object region: FlowEdit from high noise,
  no feature injection (it would copy the old shape), blending to keep the background.
- ``background``: keep the product, change the rest: inversion editor with feature injection in the
  early steps (layout and object) and K/V sharing; no blending (the mask would be inverted: give one).
- ``style``: global change, keep structure: inversion editor with feature injection in the first
  40% of the steps, no blending.
"""

from __future__ import annotations

from typing import Any

from flowstudio.edit.attention_share import AttentionShareConfig
from flowstudio.edit.blending import BlendConfig
from flowstudio.edit.flowedit import FlowEditConfig
from flowstudio.edit.injection import InjectionConfig
from flowstudio.errors import InputError

#: Preset name -> :class:`~flowstudio.edit.settings.EditSettings` field values (provisional, see above).
PRESETS: dict[str, dict[str, Any]] = {
    "product-replace": {
        "method": "flowedit",
        "steps": 30,
        "source_guidance": 1.5,
        "target_guidance": 6.0,
        "flowedit": FlowEditConfig(n_max=27, n_min=0, n_avg=1),
        "blend": BlendConfig(strength=1.0, start=0.0, end=1.0, feather=2, pixel_composite=True),
    },
    "background": {
        "method": "inversion",
        "steps": 30,
        "source_guidance": 1.0,
        "target_guidance": 5.0,
        "injection": InjectionConfig(blocks=None, start=0.0, end=0.3, strength=0.8),
        "attention_share": AttentionShareConfig(mode="concat", start=0.0, end=0.5),
    },
    "style": {
        "method": "inversion",
        "steps": 30,
        "source_guidance": 1.0,
        "target_guidance": 5.0,
        "injection": InjectionConfig(blocks=None, start=0.0, end=0.4, strength=1.0),
    },
    "color": {
        "method": "flowedit",
        "steps": 30,
        "source_guidance": 1.5,
        "target_guidance": 5.0,
        "flowedit": FlowEditConfig(n_max=21, n_min=0, n_avg=1),
        "attention_share": AttentionShareConfig(mode="concat", start=0.0, end=0.5),
        "blend": BlendConfig(strength=1.0, start=0.0, end=1.0, feather=1, pixel_composite=True),
    },
    "material": {
        "method": "flowedit",
        "steps": 30,
        "source_guidance": 1.5,
        "target_guidance": 5.5,
        "flowedit": FlowEditConfig(n_max=24, n_min=0, n_avg=1),
        "attention_share": AttentionShareConfig(mode="concat", start=0.0, end=0.4),
        "blend": BlendConfig(strength=1.0, start=0.0, end=1.0, feather=1, pixel_composite=True),
    },
}


def preset_values(name: str) -> dict[str, Any]:
    """Field values of preset ``name``; unknown names raise a clear :class:`InputError`."""
    try:
        return dict(PRESETS[name]) | {"preset": name}
    except KeyError:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
