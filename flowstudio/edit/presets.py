"""E-commerce editing presets: ``product-replace``, ``background``, ``style``, ``color``, ``material``.

A preset is a configuration that ``benchmarks/edit_toy.py`` *chose* for one edit type on one model,
and it carries that evidence (:class:`Preset`: the results file, the model, the measured accuracy
against the do-nothing edit). The benchmark's rule (``choose_per_type``) only chooses a configuration
whose attribute accuracy on the type is significantly above the ``identity`` row's (the source clip
returned unchanged; one-sided Fisher exact test at 5%) and above what an output always read as one
label would score; among those, the best-keeping one within noise of the best accuracy.

**No preset is validated today.** On the shipped ShapeWorld toy model (100 held-out pairs, 20 per
type, 20 steps; ``benchmarks/results/edit_toy.md``) no configuration edits product, colour or
background significantly more often than doing nothing; on style the edits beat doing nothing only
by reading "photo" whatever the target (no better than an output always read as one label, which
the rule also requires); material has no reader at all. So every preset is *unavailable*:
``preset="color"`` / ``--preset color`` raises :class:`~flowstudio.errors.InputError` telling the
user to pass explicit options. The presets the earlier rule picked (FlowEdit at 10 steps + K/V
sharing + auto-mask blending + pixel composite: keep PSNR ~51 dB, colour read in 1 pair of 20) kept
the source rather than edited it.

To re-enable a preset once a benchmark run qualifies a configuration: fill in its :class:`Preset`
(``values`` as :class:`~flowstudio.edit.settings.EditSettings` field values, and the evidence) in
:data:`PRESETS`; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowstudio.errors import InputError

#: Where the evidence for (or against) every preset is written.
RESULTS = "benchmarks/results/edit_toy.md"


@dataclass(frozen=True)
class Preset:
    """One edit type's preset and the benchmark evidence behind it.

    Attributes:
        name: the preset's name (``--preset NAME``).
        edit_type: the benchmark edit type it was chosen for (``product``, ``color``, ...).
        values: :class:`~flowstudio.edit.settings.EditSettings` field values; ``None`` when no
            configuration qualified (the preset is then unavailable).
        model: the model the benchmark ran on.
        results: the benchmark results file that chose it (or found nothing to choose).
        evidence: one sentence: what was measured (accuracy vs identity, keep PSNR, pairs).
    """

    name: str
    edit_type: str
    values: dict[str, Any] | None
    model: str
    results: str
    evidence: str

    @property
    def available(self) -> bool:
        """True when a benchmark run qualified a configuration for this preset."""
        return self.values is not None

    def unavailable_message(self) -> str:
        """The one-line error a user gets for an unvalidated preset."""
        return (
            f"preset {self.name!r} is not validated on this model: no benchmarked configuration edits "
            f"{self.edit_type} significantly more often than returning the source ({self.evidence}; see "
            f"{self.results}); pass explicit options instead, e.g. method='flowedit', steps=20, "
            "target_guidance=5.0 (CLI: --method flowedit --steps 20 --target-guidance 5)"
        )


_TOY = "flowstudio/assets/toy-shapes (ShapeWorld toy model, the shipped one)"
_RUN = "edit_toy, 100 held-out pairs (20 per type), 20 steps, 12 configurations"

#: Preset name -> :class:`Preset` (its evidence; ``values`` None = not validated, unavailable).
PRESETS: dict[str, Preset] = {
    "product-replace": Preset(
        name="product-replace",
        edit_type="product",
        values=None,
        model=_TOY,
        results=RESULTS,
        evidence=f"{_RUN}: best 0.15 (3/20, baseline) vs identity 0.00, p = 0.12",
    ),
    "color": Preset(
        name="color",
        edit_type="color",
        values=None,
        model=_TOY,
        results=RESULTS,
        evidence=f"{_RUN}: best 0.10 (2/20, flowedit-cfg12) vs identity 0.00, p = 0.24",
    ),
    "material": Preset(
        name="material",
        edit_type="material",
        values=None,
        model=_TOY,
        results=RESULTS,
        evidence=f"{_RUN}: material has no reader, so no configuration can be shown to edit it",
    ),
    "background": Preset(
        name="background",
        edit_type="background",
        values=None,
        model=_TOY,
        results=RESULTS,
        evidence=f"{_RUN}: best 0.10 (2/20, baseline) vs identity 0.00, p = 0.24",
    ),
    "style": Preset(
        name="style",
        edit_type="style",
        values=None,
        model=_TOY,
        results=RESULTS,
        evidence=f"{_RUN}: best 0.30 (6/20, fireflow+inject+kv) vs identity 0.00 (p = 0.01), but no more "
        "than an output always read as one label would score (0.35): the edits read 'photo' in 14-15 of 20 "
        "pairs whatever the target",
    ),
}


def preset_available(name: str) -> bool:
    """True when preset ``name`` exists and a benchmark run validated it."""
    return name in PRESETS and PRESETS[name].available


def preset_values(name: str) -> dict[str, Any]:
    """Field values of preset ``name``.

    Raises:
        InputError: the name is unknown, or the preset is not validated on the model it was
            benchmarked on (one line: why, where the evidence is, and to pass explicit options).
    """
    try:
        preset = PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    if preset.values is None:
        raise InputError(preset.unavailable_message())
    return dict(preset.values) | {"preset": name}
