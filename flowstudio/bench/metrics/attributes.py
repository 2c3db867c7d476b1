"""Toy-world attribute accuracy: read the edited attribute off the pixels and compare with the target.

For a ShapeWorld case (``case.attributes["world"] == "shapeworld"``) the edited field (``shape``,
``color``, ``material``, ``background`` or ``style``) is read from the output clip inside the
output's object mask (the case's target mask: the ground truth says where the object must be) and
compared with the target value: 1.0 when it matches, 0.0 when not. The shape is read from the
output's own silhouette (the reader estimates the object mask from the pixels): reading it through
the expected mask would only return the expected shape.

Shape, background and style are read by :mod:`flowstudio.worlds.readers` (``read_shape``,
``read_background``, ``read_style``; ``read_material`` when it exists). Colour is read here
(:func:`read_color_lab`: the median CIELAB colour of the lit object pixels, nearest palette colour
under a shading scale, by CIEDE2000), which agrees with ``worlds.readers.read_color`` on renders and
is about 10x faster. A field without a working reader reports ``skipped`` with the reason: a
missing reader never becomes a number.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from flowstudio.bench.metrics.color import ciede2000, rgb_to_lab
from flowstudio.errors import NoObjectError

logger = logging.getLogger(__name__)

_SHADES = np.linspace(0.3, 1.05, 16)
_PALETTE_CACHE: dict[str, tuple[list[str], np.ndarray]] = {}


def _palette() -> tuple[list[str], np.ndarray]:
    """Names and CIELAB of every ShapeWorld colour at every shading scale: ``(colors, shades, 3)``."""
    if "lab" not in _PALETTE_CACHE:
        from flowstudio.worlds.shapes import COLORS

        names = list(COLORS)
        rgb = np.array([COLORS[n] for n in names], np.float32) / 255.0
        shaded = np.clip(rgb[:, None, :] * _SHADES[None, :, None], 0.0, 1.0)
        _PALETTE_CACHE["lab"] = (names, rgb_to_lab(shaded.astype(np.float32)))
    return _PALETTE_CACHE["lab"]


def read_color_lab(frames: np.ndarray, mask: np.ndarray) -> str | None:
    """ShapeWorld colour name of the object in ``frames`` ``(T, H, W, 3)`` under ``mask`` ``(T, H, W)``.

    Takes the eroded mask's pixels, keeps the brighter half (lit surface, not pattern marks), and
    returns the palette colour whose shaded versions come closest (CIEDE2000) to their median
    CIELAB value; ``None`` when the mask is empty.
    """
    kernel = np.ones((3, 3), np.uint8)
    eroded = np.stack([cv2.erode(m.astype(np.uint8), kernel).astype(bool) for m in mask])
    region = eroded if eroded.sum() >= 16 else mask
    if not region.any():
        return None
    lab = rgb_to_lab(frames[region])
    lit = lab[lab[:, 0] >= np.median(lab[:, 0])]
    median = np.median(lit, axis=0)
    names, palette = _palette()
    distance = ciede2000(palette, np.broadcast_to(median, palette.shape)).min(axis=1)
    return names[int(np.argmin(distance))]


def _readers() -> dict[str, Callable[..., Any]]:
    readers: dict[str, Callable[..., Any]] = {}
    try:
        module = importlib.import_module("flowstudio.worlds.readers")
    except ImportError:
        module = None
    for field in ("color", "shape", "material", "background", "style"):
        reader = getattr(module, f"read_{field}", None) if module is not None else None
        if reader is not None:
            readers[field] = reader
    # Colour: bench's own reader (tested: it names the colour of every ground-truth colour edit of
    # shapeworld-v1), about 10x faster than the general worlds reader on a 17-frame clip.
    readers["color"] = read_color_lab
    return readers


def _call_reader(reader: Callable[..., Any], frames: np.ndarray, mask: np.ndarray | None) -> str | None:
    params = inspect.signature(reader).parameters
    value = reader(frames, mask) if len(params) >= 2 else reader(frames)
    if isinstance(value, tuple):  # (label, confidence)
        value = value[0]
    if isinstance(value, dict):
        value = value.get("label", value.get("value"))
    return None if value is None else str(value)


def attribute_accuracy(
    frames: np.ndarray, attributes: dict[str, Any], mask: np.ndarray | None
) -> dict[str, Any]:
    """Accuracy of the edited attribute of a ShapeWorld case.

    Args:
        frames: the output clip, uint8 ``(T, H, W, 3)``.
        attributes: the case's ``attributes`` (``world``, ``field``, ``source``, ``target`` specs).
        mask: where the object should be (the target mask), bool ``(T, H, W)``.

    Returns:
        ``{"value": 1.0 | 0.0, "read": <label>, "expected": <label>}`` or
        ``{"status": "skipped", "reason": ...}``.
    """
    if attributes.get("world") != "shapeworld":
        return {"status": "skipped", "reason": "not a ShapeWorld case (no attributes.world == 'shapeworld')"}
    field = attributes.get("field")
    expected = attributes.get("target", {}).get(field)
    if field is None or expected is None:
        return {"status": "skipped", "reason": "the case does not name the edited field and its target value"}
    reader = _readers().get(field)
    if reader is None:
        return {
            "status": "skipped",
            "reason": f"no reader for {field!r}: flowstudio.worlds.readers.read_{field} "
            "is not available in this install",
        }
    if field == "shape":
        mask = None  # the silhouette must come from the output's pixels, not from the expected mask
    elif mask is None and field in ("color", "material"):
        return {"status": "skipped", "reason": f"reading {field} needs the target mask"}
    try:
        label = _call_reader(reader, frames, mask)
        source = (
            f"flowstudio.worlds.readers.read_{field}"
            if reader is not read_color_lab
            else "bench.read_color_lab"
        )
    except NoObjectError:
        # the output holds no object to read (an edit that erased it): wrong, as a person would score
        # it, not left out of the mean (the readers' one rule: worlds.readers.read_or_no_object)
        from flowstudio.worlds.readers import NO_OBJECT

        return {"value": 0.0, "read": NO_OBJECT, "expected": expected, "reader": f"read_{field}"}
    except Exception as err:  # noqa: BLE001 - a reader that cannot run is reported, not fatal
        if field != "color":
            return {"status": "skipped", "reason": f"read_{field} failed: {type(err).__name__}: {err}"}
        logger.debug("worlds read_color failed (%s); using bench.read_color_lab", err)
        assert mask is not None
        label, source = read_color_lab(frames, mask), "bench.read_color_lab"
    return {"value": float(label == expected), "read": label, "expected": expected, "reader": source}
