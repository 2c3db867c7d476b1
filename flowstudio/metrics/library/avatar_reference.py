"""Reference-tier talking-head metrics of real-data papers (HDTF and the like). Declared with their
weights so that reports say exactly what to provide; their scorers are not implemented yet, so with
verified weights they are still reported unavailable, with that reason (never a number). FID and FVD
are shared with the editing suite (:mod:`.frechet`)."""

from __future__ import annotations

from flowstudio.metrics.registry import Metric, register

AVATAR = ("avatar",)

for declared in (
    Metric(
        "sync_c",
        AVATAR,
        "reference",
        True,
        "",
        "1",
        "SyncNet confidence (Chung & Zisserman 2016; Wav2Lip's LSE-C)",
        needs=("output", "audio"),
        weights="syncnet",
    ),
    Metric(
        "sync_d",
        AVATAR,
        "reference",
        False,
        "",
        "1",
        "SyncNet minimum audio-visual distance (Wav2Lip's LSE-D)",
        needs=("output", "audio"),
        weights="syncnet",
    ),
    Metric(
        "csim",
        AVATAR,
        "reference",
        True,
        "cos",
        "1",
        "ArcFace cosine similarity of the reference image and the frames",
        needs=("output", "reference_image"),
        weights="arcface",
    ),
    Metric(
        "acd",
        AVATAR,
        "reference",
        False,
        "",
        "1",
        "average content distance: ArcFace embedding distance between frames",
        needs=("output",),
        weights="arcface",
    ),
    Metric(
        "apd",
        AVATAR,
        "reference",
        False,
        "deg",
        "1",
        "average pose distance to the ground-truth video (head-pose estimator)",
        needs=("output", "truth"),
        weights="headpose",
    ),
):
    register(declared)
