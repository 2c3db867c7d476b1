"""Computations that metrics of several library files share, cached once per case (registers no metric).

SSIM: ``bg_ssim`` compares the output with the source and the ``gt_ssim*`` metrics with the ground
truth; one pass over the output's frames serves both (:func:`~flowstudio.bench.metrics.pixel.
ssim_maps_against`: the output's local moments are computed once per frame, not once per reference).

Across outputs: the source's and the ground truth's SSIM moments and the source's optical flow do not
depend on the output, so they are kept in :mod:`flowstudio.bench.metrics.content_cache` under a hash of
the clip's content and reused by every method scored on the same case (the same numbers: they are the
arrays the computation would make again).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flowstudio.bench.metrics import color, content_cache, pixel, temporal
from flowstudio.metrics.inputs import Inputs


def ssim_maps(x: Inputs, reference: str) -> np.ndarray:
    """SSIM maps ``(T, H, W)`` of the output against ``reference`` (``source`` or ``truth``)."""

    def compute() -> dict[str, np.ndarray]:
        wanted = [name for name in ("source", "truth") if _wants(x, name)]
        moments = {
            name: content_cache.CACHE.get(
                "ssim_moments", _key(x, name), lambda name=name: pixel.reference_moments(x[name])
            )
            for name in wanted
        }
        return pixel.ssim_maps_against(x["output"], {name: x[name] for name in wanted}, moments)

    maps = x.cached("ssim_maps", compute)
    if reference not in maps:  # not foreseen by _wants: compute it alone (same numbers)
        maps[reference] = pixel.ssim_maps(x["output"], x[reference])
    return maps[reference]


def _wants(x: Inputs, reference: str) -> bool:
    """Whether some metric of the case will need SSIM against ``reference``."""
    if reference == "source":
        return x.has("source") and x.has("kept_region")  # bg_ssim
    return x.has(reference)


def _key(x: Inputs, name: str) -> str:
    """Content hash of input ``name`` (a clip or a region), once per case."""
    return x.cached(f"content_key:{name}", lambda: content_cache.content_key(x[name]))


def source_flow(x: Inputs) -> np.ndarray:
    """Forward optical flow of the source clip, shared across the outputs scored on the same source."""
    return content_cache.CACHE.get("flow", _key(x, "source"), lambda: temporal.optical_flow(x["source"]))


def delta_e(x: Inputs, reference: str, region: str) -> float | None:
    """Mean CIEDE2000 of the output to ``reference`` over ``region``; the reference's CIELAB over the
    region is shared across the outputs scored on the same clip and region."""

    def compute() -> np.ndarray:
        key = _key(x, reference) + _key(x, region)
        lab = content_cache.CACHE.get("lab", key, lambda: color.region_lab(x[reference], x[region]))
        return color.delta_e_map(x["output"], x[reference], x[region], lab)

    def per_frame() -> list[float | None]:
        # the map may already be there (computed frame-parallel: flowstudio.bench.metrics.parallel)
        return pixel.frame_means(x.cached(delta_e_key(reference, region), compute), x[region])

    return pixel.mean_of_frames(frames(x, delta_e_key(reference, region), per_frame))


def frames(x: Inputs, name: str, compute: Callable[[], list[float | None]]) -> list[float | None]:
    """The per-frame values (:func:`~flowstudio.bench.metrics.pixel.frame_means`, ``frame_psnrs``) that
    metric or map ``name`` averages, once per case; the frame-parallel path
    (:mod:`flowstudio.bench.metrics.parallel`) puts them there, reduced in its workers."""
    return x.cached(f"frames:{name}", compute)


def delta_e_key(reference: str, region: str) -> str:
    """The per-case cache key of the CIEDE2000 map of the output to ``reference`` over ``region``."""
    return f"delta_e_map:{reference}:{region}"
