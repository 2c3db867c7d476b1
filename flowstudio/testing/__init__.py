"""Helpers for tests and examples: a thin re-export of the toy-model factory.

The builder itself lives in :mod:`flowstudio.models.factory` (product code imports it from there,
never from this package).
"""

from __future__ import annotations

from flowstudio.models.factory import TINY_VOCABULARY, build_tiny_checkpoint

__all__ = ["TINY_VOCABULARY", "build_tiny_checkpoint"]
