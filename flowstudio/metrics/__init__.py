"""One registry and one results format for editing and talking-head metrics.

* :mod:`.registry`: :class:`Metric` declarations (one file per metric or family of metrics that share a
  computation, in :mod:`flowstudio.metrics.library`), :func:`register`, lookups by suite.
* :mod:`.inputs`: :class:`Inputs`, what a case brings (present, or absent with the reason).
* :mod:`.scoring`: :func:`score_case` and :class:`SetScorer`, which run every metric of a suite whose
  inputs and weights are there and report the others as skipped with the reason.
* :mod:`.results`: the results JSON both ``bench run`` and ``avatar eval`` write.

The pure math the metrics call stays where it was: :mod:`flowstudio.bench.metrics` (pixel, colour,
temporal, attributes, reference models and their weights registry) and
:mod:`flowstudio.avatar.evaluation.metrics` (lip-sync, structure, identity).
"""

from flowstudio.metrics.inputs import Audio, Inputs
from flowstudio.metrics.registry import (
    INPUTS,
    Measured,
    Metric,
    Skip,
    all_metrics,
    for_suite,
    get,
    metric,
    register,
    unregister,
    versions,
)
from flowstudio.metrics.scoring import SetScorer, score_case

__all__ = [
    "INPUTS",
    "Audio",
    "Inputs",
    "Measured",
    "Metric",
    "SetScorer",
    "Skip",
    "all_metrics",
    "for_suite",
    "get",
    "metric",
    "register",
    "score_case",
    "unregister",
    "versions",
]
