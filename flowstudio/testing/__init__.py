"""Helpers for tests and examples: tiny real components, built locally in seconds."""

from __future__ import annotations

from flowstudio.testing.tiny_checkpoint import TINY_VOCABULARY, build_tiny_checkpoint

__all__ = ["TINY_VOCABULARY", "build_tiny_checkpoint"]
