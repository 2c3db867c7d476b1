"""What one case brings to scoring: its inputs (present, or absent with the reason), options, and a
per-case cache so that metrics sharing a computation (optical flow, a lip-sync curve) run it once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flowstudio.metrics.registry import INPUTS

T = TypeVar("T")


@dataclass(frozen=True)
class Audio:
    """Mono float waveform ``(N,)`` and its sample rate (Hz)."""

    waveform: Any
    sample_rate: int


class Inputs:
    """The inputs of one case.

    Args:
        values: present inputs; a value may be a zero-argument callable, loaded on first use (so a
            set-level pass does not read masks it never needs).
        missing: absent inputs and why (the reason a metric needing one is skipped with).
        options: suite settings the metrics read (e.g. the lip-sync lag range).
        reference: the reference-tier model provider
            (:class:`~flowstudio.bench.metrics.reference.ReferenceScorer`), or ``None``.
    """

    def __init__(
        self,
        values: dict[str, Any],
        missing: dict[str, str] | None = None,
        *,
        options: dict[str, Any] | None = None,
        reference: Any | None = None,
    ) -> None:
        unknown = [n for n in [*values, *(missing or {})] if n not in INPUTS]
        if unknown:
            raise KeyError(f"unknown metric inputs {unknown}; known: {', '.join(INPUTS)}")
        self._values = dict(values)
        self._lazy = {n for n, v in values.items() if callable(v) and n not in _CALLABLE_INPUTS}
        self.missing = dict(missing or {})
        self.options = dict(options or {})
        self.reference = reference
        self.details: dict[str, Any] = {}
        self._cache: dict[str, Any] = {}

    def has(self, name: str) -> bool:
        return name in self._values

    def why_missing(self, name: str) -> str:
        return self.missing.get(name) or f"the case has no {name}"

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            raise KeyError(f"input {name!r} is absent: {self.why_missing(name)}")
        if name in self._lazy:
            self._values[name] = self._values[name]()
            self._lazy.discard(name)
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self._values else default

    def option(self, name: str, default: Any) -> Any:
        return self.options.get(name, default)

    def cached(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per case under ``key`` (shared by the metrics of one library file)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def detail(self, key: str, value: Any) -> None:
        """Record a per-case detail (a curve, the time used) in the case's record."""
        self.details[key] = value


#: Inputs whose value is itself callable (never loaded lazily).
_CALLABLE_INPUTS = frozenset({"toy_features"})
