"""E-commerce editing presets: ``product-replace``, ``background``, ``style``, ``color``, ``material``.

A preset is a configuration that ``benchmarks/edit_toy.py`` *chose* for one edit type on one model,
and it carries that evidence (:class:`Preset`: the results file, the model, the measured accuracy
against the do-nothing edit). The benchmark's rule (``choose_per_type``) only chooses a configuration
whose attribute accuracy on the type is significantly above the ``identity`` row's (the source clip
returned unchanged; one-sided Fisher exact test at 5%) and above what an output always read as one
label would score; among those, the best-keeping one within noise of the best accuracy.

On the shipped ShapeWorld toy model (v5; 100 held-out pairs, 20 per type, 20 steps, 16
configurations; ``benchmarks/results/edit_toy.md``, 2026-12-02):

- ``product-replace`` is validated: FlowEdit at 20 steps (CFG 1.5 / 5, frame 0 generated) reads the
  target shape in 10 of 20 pairs (identity 0, one label 0.20), within noise of the best (0.60, RF-Solver
  at 10 steps) with the best keep PSNR among those, 19.9 dB. **Below its bar** (0.6 with keep PSNR >=
  30 dB). On v3 no product configuration beat one label.
- ``color`` is validated: FlowEdit with the change-mask pixel composite (the source's pixels
  wherever the edit did not change them) reads the target colour in 15 of 20 pairs (identity 0, one
  label 0.40) and keeps 24.4 dB (plain FlowEdit: the same accuracy, 20.6 dB). **Below its bar**
  (accuracy >= 0.8 with keep PSNR >= 30 dB). Using it logs that (:attr:`Preset.below_bar`).
- ``background`` is validated by a second run of 40 background pairs (``edit_toy.py --types
  background --pairs 200``, 5 configurations; ``benchmarks/results/edit_toy_background_v5/edit_toy.md``):
  FlowEdit with the change-mask composite reads the target background in 23 of 40 (identity 0, one
  label 0.275), within noise of the best (plain FlowEdit, 0.70) with the best keep PSNR on the
  product, 18.3 dB. **Below its bar** (0.7 with 30 dB). With 20 pairs the first run could not tell
  it from one label.
- ``style`` edits significantly more often than doing nothing (best 0.30), but not more often than
  an output always read as one style (0.35), so no configuration is shown to follow the *target*;
  ``material`` had no reader in that run (``read_material`` came later; the toy VAE also erases
  every pattern: ``benchmarks/results/material_vae.md``). These are unavailable: ``preset="style"``
  / ``--preset style`` raises :class:`~flowstudio.errors.InputError` telling the user to pass
  explicit options.

The presets chosen on v3, the model shipped before (``benchmarks/results/edit_toy_v3/edit_toy.md``):
``color`` (the same configuration, 0.75 at 25.0 dB) and ``background`` (FlowEdit, 0.525 of 40 pairs).
Until 2026-12-01 every edit pinned the *source's* frame 0 as the TI2V first frame, and the model
carried its look into every later frame: no configuration edited anything.

To (re-)validate a preset after a benchmark run: fill in its :class:`Preset` (``values`` as
:class:`~flowstudio.edit.settings.EditSettings` field values, and the evidence) in :data:`PRESETS`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flowstudio.edit.blending import BlendConfig
from flowstudio.errors import InputError

logger = logging.getLogger(__name__)

#: Where the evidence for (or against) every preset is written.
RESULTS = "benchmarks/results/edit_toy.md"
#: The run of 40 background pairs on v5 (``edit_toy.py --types background``) for ``background``.
RESULTS_BACKGROUND = "benchmarks/results/edit_toy_background_v5/edit_toy.md"


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
        below_bar: which of the issue's quality bars a validated preset misses (``None``: meets
            them); using such a preset logs it as a warning.
    """

    name: str
    edit_type: str
    values: dict[str, Any] | None
    model: str
    results: str
    evidence: str
    below_bar: str | None = None

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


_TOY = "flowstudio/assets/toy-shapes (ShapeWorld toy model v5, the shipped one)"
_RUN = "edit_toy on v5, 100 held-out pairs (20 per type), 20 steps, 16 configurations"
_RUN_BACKGROUND = (
    "edit_toy on v5, the 40 background pairs of 200 held-out pairs, 20 steps, 5 configurations (baseline, "
    "FlowEdit, RF-Solver and FireFlow at 10 steps, FlowEdit + change-mask composite)"
)

#: edit_toy's ``flowedit`` configuration (20 steps, CFG 1.5 / 5, frame 0 generated): every validated
#: preset starts from it.
_FLOWEDIT: dict[str, Any] = {
    "method": "flowedit",
    "steps": 20,
    "source_guidance": 1.5,
    "target_guidance": 5.0,
    "first_frame": "none",
}
#: The change-mask pixel composite (no latent blending): the source's pixels wherever the edit did not
#: change them; edit_toy's ``+change-composite`` configurations.
_CHANGE_COMPOSITE = BlendConfig(strength=0.0, pixel_composite=True, composite_mask="change")

#: Preset name -> :class:`Preset` (its evidence; ``values`` None = not validated, unavailable).
PRESETS: dict[str, Preset] = {
    "product-replace": Preset(
        name="product-replace",
        edit_type="product",
        values=dict(_FLOWEDIT),
        model=_TOY,
        results=RESULTS,
        evidence=f"{_RUN}: FlowEdit reads the target shape in 10/20 pairs (0.50) vs identity 0.00 "
        "(p < 0.001) and one-label 0.20, within noise of the best (0.60, rf-solver-half-steps) with the "
        "best keep PSNR among them, 19.9 dB",
        below_bar="accuracy 0.50 (bar 0.6) and keep PSNR 19.9 dB (bar 30 dB): the toy model redraws the "
        "whole scene around the new product; a mask of the product (blending keeps the rest) is the lever",
    ),
    "color": Preset(
        name="color",
        edit_type="color",
        values={**_FLOWEDIT, "blend": _CHANGE_COMPOSITE},
        model=_TOY,
        results=RESULTS,
        evidence=f"{_RUN}: FlowEdit + change-mask composite reads the target colour in 15/20 pairs (0.75) "
        "vs identity 0.00 (p < 0.001) and one-label 0.40; keep PSNR outside the edit 24.4 dB "
        "(plain FlowEdit: same accuracy, 20.6 dB)",
        below_bar="accuracy 0.75 (bar 0.8) and keep PSNR 24.4 dB (bar 30 dB): the toy model redraws the "
        "object with distortions and leaves blotches beyond it, which the composite keeps",
    ),
    "material": Preset(
        name="material",
        edit_type="material",
        values=None,
        model=_TOY,
        results=RESULTS,
        evidence=f"{_RUN}: material had no reader in that run, so no configuration was shown to edit it",
    ),
    "background": Preset(
        name="background",
        edit_type="background",
        values={**_FLOWEDIT, "blend": _CHANGE_COMPOSITE},
        model=_TOY,
        results=RESULTS_BACKGROUND,
        evidence=f"{_RUN_BACKGROUND}: FlowEdit + change-mask composite reads the target background in 23/40 "
        "pairs (0.575) vs identity 0.00 and one-label 0.275, within noise of the best (0.70, plain FlowEdit) "
        "with the best keep PSNR (the product's pixels) 18.3 dB; on edit_toy's 20 background pairs no "
        "configuration was significantly above one label",
        below_bar="accuracy 0.575 (bar 0.7) and keep PSNR 18.3 dB on the product (bar 30 dB): the toy model "
        "redraws the product with the background; a mask of the product (blending keeps it) is the lever",
    ),
    "style": Preset(
        name="style",
        edit_type="style",
        values=None,
        model=_TOY,
        results=RESULTS,
        evidence=f"{_RUN}: best 0.30 (6/20, flowedit) vs identity 0.00 (p = 0.01), but no more than the "
        "0.35 an output always read as one style would score",
    ),
}


def preset_available(name: str) -> bool:
    """True when preset ``name`` exists and a benchmark run validated it."""
    return name in PRESETS and PRESETS[name].available


def values_of(preset: Preset) -> dict[str, Any]:
    """Field values of ``preset`` (plus ``preset=name``); logs a warning when it is below its bar.

    Raises:
        InputError: the preset is not validated (one line: why, where the evidence is, and to pass
            explicit options).
    """
    if preset.values is None:
        raise InputError(preset.unavailable_message())
    if preset.below_bar:
        logger.warning(
            "preset %r edits, but is below its quality bar on %s: %s (%s)",
            preset.name,
            preset.model,
            preset.below_bar,
            preset.results,
        )
    return dict(preset.values) | {"preset": preset.name}


def preset_values(name: str) -> dict[str, Any]:
    """Field values of preset ``name`` (:func:`values_of`).

    Raises:
        InputError: the name is unknown, or the preset is not validated on the model it was
            benchmarked on (one line: why, where the evidence is, and to pass explicit options).
    """
    try:
        preset = PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    return values_of(preset)
