"""Computations that metrics of several library files share, cached once per case (registers no metric).

SSIM: ``bg_ssim`` compares the output with the source and the ``gt_ssim*`` metrics with the ground
truth; one pass over the output's frames serves both (:func:`~flowstudio.bench.metrics.pixel.
ssim_maps_against`: the output's local moments are computed once per frame, not once per reference).
"""

from __future__ import annotations

import numpy as np

from flowstudio.bench.metrics import pixel
from flowstudio.metrics.inputs import Inputs


def ssim_maps(x: Inputs, reference: str) -> np.ndarray:
    """SSIM maps ``(T, H, W)`` of the output against ``reference`` (``source`` or ``truth``)."""

    def compute() -> dict[str, np.ndarray]:
        wanted = [name for name in ("source", "truth") if _wants(x, name)]
        return pixel.ssim_maps_against(x["output"], {name: x[name] for name in wanted})

    maps = x.cached("ssim_maps", compute)
    if reference not in maps:  # not foreseen by _wants: compute it alone (same numbers)
        maps[reference] = pixel.ssim_maps(x["output"], x[reference])
    return maps[reference]


def _wants(x: Inputs, reference: str) -> bool:
    """Whether some metric of the case will need SSIM against ``reference``."""
    if reference == "source":
        return x.has("source") and x.has("kept_region")  # bg_ssim
    return x.has(reference)
