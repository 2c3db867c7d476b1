"""The one registry of evaluation metrics, for editing (``bench``) and talking-head (``avatar``) runs.

A metric is declared once, in one file of :mod:`flowstudio.metrics.library`, with everything a
report needs to know about it (:class:`Metric`): name, the evaluations (suites) that report it, tier,
level, direction, unit, version, the inputs it needs, the weights it needs, and how to compute it.
The library is imported on first use, so a new file there is a new metric: scoring code never names
one (:mod:`flowstudio.metrics.scoring` picks them by the inputs a case has).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowstudio.metrics.inputs import Inputs

SUITES: tuple[str, ...] = ("edit", "avatar")
TIERS: tuple[str, ...] = ("offline", "reference")
LEVELS: tuple[str, ...] = ("case", "set")

#: Inputs a metric may need, with what each is. A suite provides some of them per case (or says why
#: one is absent); a metric runs only when all of its ``needs`` are there.
INPUTS: dict[str, str] = {
    "output": "the clip being scored: edited or generated, uint8 (T, H, W, 3)",
    "source": "the source clip of an edit, uint8 (T, H, W, 3)",
    "truth": "the ground-truth clip (edit: the true edited clip; avatar: the real video), uint8",
    "real": "the clip a set's distribution is compared with (truth, else the edit's source)",
    "edit_region": "where the edit should act, bool (T, H, W)",
    "kept_region": "what the edit must keep, bool (T, H, W)",
    "object_mask": "where the object is in the output (target mask, else source mask), bool (T, H, W)",
    "attributes": "toy-world attributes of the case ({'world', 'field', 'source', 'target'})",
    "prompt": "the target prompt (str)",
    "audio": "the driving audio (flowstudio.metrics.inputs.Audio: mono waveform + sample rate)",
    "fps": "frame rate of the output (float)",
    "reference_image": "the avatar's reference image, uint8 (H, W, 3), at the output's size",
    "structure": "generated structure latent (T, 7 + 3K), raw scale",
    "truth_structure": "ground-truth structure latent (T, 7 + 3K)",
    "toy_features": (
        "the toy video feature extractor (flowstudio.avatar.evaluation.features.ToyFeatureExtractor)"
    ),
}


@dataclass(frozen=True)
class Skip:
    """A metric that was not computed, and why (never a number)."""

    reason: str

    def record(self) -> dict[str, str]:
        return {"status": "skipped", "reason": self.reason}


@dataclass(frozen=True)
class Measured:
    """A value with extra fields reported beside it (e.g. a set metric's sample count)."""

    value: float | int
    extra: dict[str, Any] = field(default_factory=dict)


Value = float | int | Measured | Skip


@dataclass(frozen=True)
class Metric:
    """One metric, as declared by its library file.

    Attributes:
        name: unique key in every results file.
        suites: the evaluations that report it (``edit``, ``avatar``).
        tier: ``offline`` (no weights) or ``reference`` (weights the user supplies).
        higher_is_better: direction; ``None`` when there is none (an offset, a diagnostic).
        unit: unit of the value (``""`` when unitless).
        version: bumped whenever the definition changes (recorded in every results file).
        description: one line.
        needs: names of :data:`INPUTS` that must be present (per case; for a set metric, in every case).
        weights: registry entry of the weights (:mod:`flowstudio.bench.metrics.registry`), reference tier.
        level: ``case`` (per case, then mean / std) or ``set`` (one number for the set).
        compute: case level: ``compute(inputs) -> Value``; set level: ``compute(parts) -> Value`` over
            what ``collect`` returned for each case. ``None``: declared, but no scorer exists yet (the
            metric is reported unavailable with that reason).
        collect: set level only: ``collect(inputs) -> part`` per case (keep it small: features, not
            frames, so a large set fits in memory).
    """

    name: str
    suites: tuple[str, ...]
    tier: str
    higher_is_better: bool | None
    unit: str
    version: str
    description: str
    needs: tuple[str, ...] = ()
    weights: str | None = None
    level: str = "case"
    compute: Callable[..., Value] | None = None
    collect: Callable[[Inputs], Any] | None = None

    def __post_init__(self) -> None:
        problems = [f"suites {self.suites}" for s in self.suites if s not in SUITES] + [
            f"need {n!r}" for n in self.needs if n not in INPUTS
        ]
        if self.tier not in TIERS:
            problems.append(f"tier {self.tier!r}")
        if self.level not in LEVELS:
            problems.append(f"level {self.level!r}")
        if self.tier == "reference" and not self.weights:
            problems.append("a reference-tier metric without weights")
        if self.level == "set" and self.compute is not None and self.collect is None:
            problems.append("a set metric without collect")
        if problems or not self.suites:
            raise ValueError(
                f"metric {self.name!r}: invalid declaration ({', '.join(problems) or 'no suite'})"
            )

    def info(self) -> dict[str, Any]:
        """The declaration as JSON (results files carry it for every metric they report)."""
        return {
            "tier": self.tier,
            "level": self.level,
            "higher_is_better": self.higher_is_better,
            "unit": self.unit,
            "version": self.version,
            "description": self.description,
            "needs": list(self.needs),
            **({"weights": self.weights} if self.weights else {}),
        }


_REGISTRY: dict[str, Metric] = {}
_LOADED = False


def register(metric: Metric) -> Metric:
    """Add ``metric``; a second declaration of one name is an error (each metric is declared once)."""
    if metric.name in _REGISTRY:
        raise ValueError(
            f"metric {metric.name!r} is already declared ({_REGISTRY[metric.name].description!r})"
        )
    _REGISTRY[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    """Remove a metric (tests register throw-away ones)."""
    _REGISTRY.pop(name, None)


def metric(name: str, **declaration: Any) -> Callable[[Callable[..., Value]], Callable[..., Value]]:
    """Decorator form of :func:`register`: the decorated function is the metric's ``compute``."""

    def wrap(compute: Callable[..., Value]) -> Callable[..., Value]:
        register(Metric(name=name, compute=compute, **declaration))
        return compute

    return wrap


def _load_library() -> None:
    """Import every module of :mod:`flowstudio.metrics.library` once (each registers its metrics)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from flowstudio.metrics import library

    for module in sorted(pkgutil.iter_modules(library.__path__), key=lambda m: m.name):
        importlib.import_module(f"{library.__name__}.{module.name}")


def all_metrics() -> dict[str, Metric]:
    """Every registered metric by name, in declaration order."""
    _load_library()
    return dict(_REGISTRY)


def get(name: str) -> Metric:
    metrics = all_metrics()
    if name not in metrics:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(metrics)}")
    return metrics[name]


def for_suite(suite: str, *, level: str | None = None, tier: str | None = None) -> list[Metric]:
    """The metrics a suite reports, optionally of one level or tier."""
    if suite not in SUITES:
        raise KeyError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    return [
        m
        for m in all_metrics().values()
        if suite in m.suites and (level is None or m.level == level) and (tier is None or m.tier == tier)
    ]


def versions(suite: str) -> dict[str, str]:
    """``{name: version}`` of a suite's metrics (recorded in the settings of every run)."""
    return {m.name: m.version for m in for_suite(suite)}


def using_weights(weights: str) -> tuple[str, ...]:
    """Names of the metrics that need the weights entry ``weights``."""
    return tuple(m.name for m in all_metrics().values() if m.weights == weights)


def names(metrics: Iterable[Metric]) -> list[str]:
    return [m.name for m in metrics]
