"""``benchmarks/attribute_vae.py``: what the material and style readers see on renders and on a round
trip, and the counts per group."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling _results
spec = importlib.util.spec_from_file_location("attribute_vae", BENCHMARKS / "attribute_vae.py")
attribute_vae = importlib.util.module_from_spec(spec)
spec.loader.exec_module(attribute_vae)


def test_an_exact_round_trip_reads_like_the_render_and_a_blur_loses_the_style():
    from flowstudio.worlds.readers import read_style
    from flowstudio.worlds.shapes import STYLES

    exact = attribute_vae.read_roundtrips(lambda clip: clip.copy(), "style", 8)
    assert all(r["reconstruction"] == r["render"] for r in exact)
    assert all(r["style"] in STYLES for r in exact)

    import cv2

    def blur(clip: np.ndarray) -> np.ndarray:  # what a blurring VAE does to posterize bands and pixel blocks
        return np.stack([cv2.GaussianBlur(frame, (0, 0), 2.0) for frame in clip])

    blurred = attribute_vae.read_roundtrips(blur, "style", 8)
    filtered = [r for r in blurred if r["style"] in ("posterize", "pixel")]
    assert filtered, "the first 8 held-out scenes hold a posterize or pixel clip"
    assert not any(r["reconstruction"] == r["style"] for r in filtered)
    assert read_style is attribute_vae.ATTRIBUTES["style"][0]


def test_group_counts_per_family_and_material():
    rows = [
        {"material": "striped", "render": "striped", "reconstruction": "matte"},
        {"material": "dotted", "render": "dotted", "reconstruction": "dotted"},
        {"material": "matte", "render": "glossy", "reconstruction": "matte"},
    ]
    groups = attribute_vae.group_counts(rows, "material")
    assert groups["family:plain"] == {
        "n": 1,
        "render_right": 1,  # glossy and matte are both plain
        "reconstruction_right": 1,
        "reconstruction_reads_as_render": 1,
        "reconstruction_reads": {"plain": 1},
    }
    assert groups["material:matte"]["render_right"] == 0
    assert groups["material:matte"]["reconstruction_reads_as_render"] == 0
    assert groups["family:striped"]["reconstruction_reads"] == {"plain": 1}
    assert groups["material:dotted"]["reconstruction_right"] == 1
    assert set(groups) == {
        "family:dotted",
        "family:plain",
        "family:striped",
        "material:dotted",
        "material:matte",
        "material:striped",
    }
