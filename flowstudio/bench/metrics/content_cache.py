"""Intermediate results of a reference clip (the source, the ground truth), kept across the outputs scored
against it.

Every method edited from the same case is compared with the same source and ground truth: the source's
optical flow and the local SSIM moments of the source and truth frames are the same for every method.
They are computed once and kept here, keyed by a hash of the clip's content (SHA-256 of its bytes,
shape and dtype; a bool region's bits packed first), so a second output of the same case reuses them; a
different clip (another case, or the same case re-rendered differently) has another key. The case's
decoded files (ground truth, masks) are kept too, keyed by path, size, modification time and inode
(:func:`flowstudio.bench.scoring.case_inputs`; every read gets its own copy). Nothing but genuinely
computed intermediates and decoded inputs is stored: the metric values themselves are always computed
from the output.

Bounded: least recently used entries are dropped beyond ``FLOWSTUDIO_METRIC_CACHE_MB`` (default 1024 MB;
0 turns the cache off); an entry larger than the bound is computed and not kept.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

_DEFAULT_MB = 1024


def content_key(array: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and bytes (bool arrays: of their packed bits, 8x fewer bytes).

    SHA-256 rather than BLAKE2b: with the CPU's SHA instructions it hashes a 17-frame 480x832 clip in
    ~16 ms, BLAKE2b in ~37 ms.
    """
    h = hashlib.sha256(repr((array.shape, array.dtype.str)).encode())
    data = np.packbits(array) if array.dtype == np.bool_ else np.ascontiguousarray(array)
    h.update(data.data)
    return h.hexdigest()


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, list | tuple):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if hasattr(value, "__dict__"):
        return sum(_nbytes(v) for v in vars(value).values())
    return 0


class ContentCache:
    """LRU map ``(kind, content key) -> value`` bounded by the bytes of the values' arrays."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], tuple[Any, int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, kind: str, key: str, compute: Callable[[], T]) -> T:
        """The value under ``(kind, key)``, computed by ``compute()`` and kept when absent."""
        item = self._items.get((kind, key))
        if item is not None:
            self._items.move_to_end((kind, key))
            self.hits += 1
            return item[0]
        self.misses += 1
        value = compute()
        size = _nbytes(value)
        if self.max_bytes > 0 and size <= self.max_bytes:
            self._items[(kind, key)] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped
        return value

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)


CACHE = ContentCache(int(float(os.environ.get("FLOWSTUDIO_METRIC_CACHE_MB", _DEFAULT_MB)) * 2**20))


def clear() -> None:
    """Empty the process-wide cache (a cold start: the next score computes everything)."""
    CACHE.clear()
