"""Score one output clip against its test case: every offline metric, and the reference tier when asked.

Regions (bool ``(T, H, W)``):

* by ``case.preserve``: ``outside_mask`` (product, colour, material edits) -> the edit region is the
  union of the case's ``mask`` and ``target_mask``, the kept region the rest; ``inside_mask``
  (background edits) -> the kept region is the source mask (the product), the edit region outside
  the union of the masks; ``none`` (style edits) -> the edit region is every pixel and nothing is
  kept (``bg_*`` metrics are then not applicable).

The metrics themselves are the editing suite of :mod:`flowstudio.metrics` (one file each in
:mod:`flowstudio.metrics.library`); this module only says what a case provides. A metric that does not
apply (no ground truth, no mask, empty region) is absent from ``metrics`` and listed in ``skipped``
with the reason; nothing is ever reported as a made-up number.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from flowstudio import metrics
from flowstudio.bench.manifest import Case
from flowstudio.errors import InputError
from flowstudio.metrics import Inputs

logger = logging.getLogger(__name__)


def regions(
    case: Case, mask: np.ndarray | None, target_mask: np.ndarray | None, shape: tuple[int, int, int]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(edit region, kept region) of a case, bool ``shape``; ``None`` where undefined (no mask).

    ``outside_mask``: edit = union of the masks, kept = the rest. ``inside_mask`` (background edits):
    kept = the source object mask, edit = outside the union of the masks. ``none`` (style): edit =
    every pixel, kept = nothing.
    """
    masks = [m for m in (mask, target_mask) if m is not None]
    union = None
    if masks:
        union = masks[0].copy()
        for m in masks[1:]:
            union |= m
    if case.preserve == "none":
        return np.ones(shape, bool), None
    if case.preserve == "inside_mask":
        return (None if union is None else ~union), mask
    return union, (None if union is None else ~union)


def check_output(frames: Any, source: np.ndarray, case_id: str) -> np.ndarray:
    """The output must be uint8 ``(T, H, W, 3)`` with the source's frames and size."""
    if (
        not isinstance(frames, np.ndarray)
        or frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[-1] != 3
    ):
        raise InputError(
            f"case {case_id}: the output must be a uint8 (frames, height, width, 3) array, got "
            f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}"
        )
    if frames.shape != source.shape:
        raise InputError(
            f"case {case_id}: the output is {frames.shape[0]} frames of {frames.shape[1]}x{frames.shape[2]}"
            f" (HxW) but the source is {source.shape[0]} frames of {source.shape[1]}x{source.shape[2]};"
            " outputs must keep the source's frames and size"
        )
    return frames


def _read(path: Any, load: Callable[[], np.ndarray | None]) -> Callable[[], np.ndarray | None]:
    """``load`` of a case file, decoded once and kept in the content cache
    (:mod:`flowstudio.bench.metrics.content_cache`) under the file's path, size, modification time and
    inode: every method scored on a case reads the same ground truth and masks, and decoding their
    compressed ``.npz`` again cost ~50 ms of a 17-frame 480x832 case. A rewritten file (a new inode
    or time) is read again. Each call returns its own copy, so no caller can change the kept array.
    """

    def read() -> np.ndarray | None:
        from flowstudio.bench.metrics import content_cache

        if path is None:
            return load()
        stat = os.stat(path)
        key = f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
        array = content_cache.CACHE.get("file", key, load)
        return None if array is None else array.copy()

    return read


def case_inputs(
    case: Case,
    output: np.ndarray | None,
    *,
    source: np.ndarray | None = None,
    reference: Any | None = None,
) -> Inputs:
    """The metric inputs of one case (absent ones with the reason a metric needing them is skipped).

    ``output`` ``None`` gives the inputs without an output (for the set-level pass, which reads it from
    the run folder). Files are read on first use: a pass that needs no mask reads none.
    """
    source = case.load_source() if source is None else source
    has_mask = case.mask is not None or case.target_mask is not None
    values: dict[str, Any] = {"source": source, "prompt": case.target_prompt, "attributes": case.attributes}
    missing: dict[str, str] = {}
    if output is not None:
        values["output"] = output
    load_target = _read(case.target, case.load_target)
    load_mask = _read(case.mask, case.load_mask)
    load_target_mask = _read(case.target_mask, case.load_target_mask)
    if case.target is not None:
        values["truth"] = load_target
        values["real"] = load_target
    else:
        missing["truth"] = "the case has no ground-truth target"
        values["real"] = source  # FVD / FID compare with the source when there is no ground truth

    def regions_() -> tuple[np.ndarray | None, np.ndarray | None]:
        return regions(case, load_mask(), load_target_mask(), source.shape[:3])

    cache: dict[str, Any] = {}

    def region(index: int) -> Any:
        def load() -> Any:
            if "regions" not in cache:
                cache["regions"] = regions_()
            return cache["regions"][index]

        return load

    if case.preserve == "none" or has_mask:
        values["edit_region"] = region(0)
    else:
        missing["edit_region"] = "the case has no mask"
    if case.preserve != "none" and has_mask and (case.preserve != "inside_mask" or case.mask is not None):
        values["kept_region"] = region(1)
    else:
        missing["kept_region"] = (
            "the edit type keeps no region (preserve: none)"
            if case.preserve == "none"
            else "the case has no mask"
        )
    if has_mask:
        values["object_mask"] = lambda: load_target_mask() if case.target_mask is not None else load_mask()
    return Inputs(values, missing, reference=reference)


def score_case(
    case: Case,
    output: np.ndarray,
    *,
    reference: Any | None = None,
    source: np.ndarray | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Every metric of the editing suite on one case (:func:`flowstudio.metrics.score_case`).

    Args:
        case: the test case.
        output: the edited clip, uint8 ``(T, H, W, 3)``, same shape as the source.
        reference: a :class:`~flowstudio.bench.metrics.reference.ReferenceScorer`, or ``None`` for the
            offline tier only (reference metrics are then skipped, "not requested").
        source: the source clip when already loaded.
        workers: processes for the per-frame work of the offline tier
            (:func:`flowstudio.bench.metrics.parallel.prefill`; the same numbers); 1 = this process.

    The first call sets this process's C allocator to keep freed memory for reuse
    (:func:`flowstudio.bench.metrics.memory.keep_freed_memory`; ``FLOWSTUDIO_KEEP_FREED_MEMORY=0`` turns
    that off): scoring frees and reallocates the same large arrays case after case.

    Returns:
        ``{"metrics": {name: number}, "skipped": {name: reason}, "details": {...}}``.
    """
    from flowstudio.bench.metrics.memory import keep_freed_memory

    keep_freed_memory()
    source = case.load_source() if source is None else source
    output = check_output(output, source, case.id)
    inputs = case_inputs(case, output, source=source, reference=reference)
    if workers > 1:
        from flowstudio.bench.metrics import parallel

        parallel.prefill(inputs, workers)
    return metrics.score_case("edit", inputs)
