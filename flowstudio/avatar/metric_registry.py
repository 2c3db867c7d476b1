"""The one list of talking-head metrics, offline and reference tier, so the report format never changes.

Every metric of ``flowstudio avatar eval`` is described here (:data:`AVATAR_METRICS`): its tier
(``offline``: no weights; ``reference``: weights the user supplies), level (per ``clip`` and then
averaged, or over the whole ``set``), direction, unit and version (bumped whenever a definition
changes, and recorded in every report).

The reference tier is the one used on real data (HDTF and the like): Sync-C / Sync-D (SyncNet),
FID (Inception-v3), FVD (I3D), CSIM (ArcFace cosine to the reference), ACD (ArcFace distance between
frames), APD (head-pose distance to the ground truth). Weights come from local paths only, resolved
and SHA-256-checked like the editing benchmark's (:mod:`flowstudio.bench.metrics.registry`: an
environment variable per entry, a weights config, or the weights root). FID and FVD reuse that
registry's ``inception`` and ``i3d`` entries and its
:class:`~flowstudio.bench.metrics.reference.ReferenceScorer`; SyncNet, ArcFace and the head-pose
estimator are entries of :data:`AVATAR_WEIGHTS`. Without verified weights a metric is reported as
``{"status": "skipped", "reason": "needs ... (not available locally): ..."}`` - never a number.
SyncNet, ArcFace and head-pose scorers are not implemented yet: with their weights present the
metric is still skipped, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowstudio.bench.metrics.registry import WEIGHTS, WeightSpec, WeightStatus, resolve, resolve_spec

Result = float | int | dict[str, Any]


@dataclass(frozen=True)
class AvatarMetric:
    """What one metric of the avatar report means.

    Attributes:
        name: key in the report.
        tier: ``offline`` or ``reference``.
        level: ``clip`` (per clip, then mean / std over clips) or ``set`` (one number for the set).
        higher_is_better: direction, ``None`` when there is none (an offset, a time).
        unit: unit of the value.
        version: bumped whenever the definition changes.
        description: one line.
        needs: what a clip must bring (``audio``, ``structure``, ``truth``, ``features`` ...).
        weights: registry entry of the weights (reference tier).
        implemented: whether a scorer exists once the weights are there.
    """

    name: str
    tier: str
    level: str
    higher_is_better: bool | None
    unit: str
    version: str
    description: str
    needs: str = ""
    weights: str = ""
    implemented: bool = True


def _m(*args: Any, **kwargs: Any) -> AvatarMetric:
    return AvatarMetric(*args, **kwargs)


AVATAR_METRICS: dict[str, AvatarMetric] = {
    m.name: m
    for m in (
        # -- offline, per clip ---------------------------------------------------------------------
        _m("lip_sync_corr", "offline", "clip", True, "r", "1",
           "Pearson r of read mouth opening and dB loudness over speech frames, at the best lag", "audio"),
        _m("lip_sync_offset", "offline", "clip", None, "frames",
           "1", "best lag (positive: mouth follows audio; the toy world's truth is +1)", "audio"),
        _m("lip_sync_corr_at_0", "offline", "clip", True, "r", "1", "the same correlation at lag 0", "audio"),
        _m("lip_sync_conf", "offline", "clip", True, "r", "1",
           "best-lag correlation minus the median over lags (how much the best lag stands out)", "audio"),
        _m("structure_err_pose", "offline", "clip", False, "rad", "1",
           "MAE of generated yaw/pitch/roll against the ground truth", "structure+truth"),
        _m("structure_err_translation_scale", "offline", "clip", False, "head units", "1",
           "MAE of generated tx/ty/tz/scale against the ground truth", "structure+truth"),
        _m("structure_err_keypoints", "offline", "clip", False, "head units", "1",
           "MAE of generated 3D keypoints against the ground truth", "structure+truth"),
        _m("pose_in_limits", "offline", "clip", True, "fraction", "1",
           "frames whose yaw, pitch and roll are within the world's POSE_LIMITS", "structure"),
        _m("pose_velocity_w1", "offline", "clip", False, "rad/frame", "1",
           "1-D Wasserstein distance of frame-to-frame angle changes, generated vs truth (mean of 3)",
           "structure+truth"),
        _m("identity_drift_10s", "offline", "clip", False, "dE", "1",
           "colour-signature EMD, reference image vs frames at 10 s (or the last frames)", "reference"),
        _m("identity_drift_30s", "offline", "clip", False, "dE", "1",
           "colour-signature EMD, reference image vs frames at 30 s (or the last frames)", "reference"),
        _m("identity_world_10s", "offline", "clip", None, "dE", "1",
           "the same distance on the ground truth (its frame 0 vs its frames at the same time)", "truth"),
        _m("identity_world_30s", "offline", "clip", None, "dE", "1",
           "the same distance on the ground truth at the 30 s time", "truth"),
        _m("identity_world_p95", "offline", "clip", None, "dE", "1",
           "95th percentile over ground-truth frames of the distance to its frame 0", "truth"),
        _m("identity_ratio_30s", "offline", "clip", False, "x", "1",
           "identity_drift_30s / identity_world_p95 (<= 1: within the world's own variation)", "truth"),
        _m("warp_error", "offline", "clip", False, "levels", "1",
           "flow-compensated mean |frame t - warped frame t+1| (bench temporal metric)"),
        _m("flicker", "offline", "clip", False, "levels", "1",
           "flow-compensated change of mean luma between consecutive frames (bench temporal metric)"),
        # -- offline, set level --------------------------------------------------------------------
        _m("lip_sync_offset_set", "offline", "set", None, "frames", "1",
           "lag maximising the mean correlation curve over the clips"),
        _m("fvd_toy", "offline", "set", False, "", "1",
           "Frechet distance of the toy feature extractor's 16-frame window features, generated vs truth",
           "features+truth"),
        # -- reference tier ------------------------------------------------------------------------
        _m("sync_c", "reference", "clip", True, "", "1",
           "SyncNet confidence (Chung & Zisserman 2016; Wav2Lip's LSE-C)", "audio", "syncnet", False),
        _m("sync_d", "reference", "clip", False, "", "1",
           "SyncNet minimum audio-visual distance (Wav2Lip's LSE-D)", "audio", "syncnet", False),
        _m("csim", "reference", "clip", True, "cos", "1",
           "ArcFace cosine similarity of the reference image and the frames", "reference", "arcface", False),
        _m("acd", "reference", "clip", False, "", "1",
           "average content distance: ArcFace embedding distance between frames", "", "arcface",
           False),
        _m("apd", "reference", "clip", False, "deg", "1",
           "average pose distance to the ground-truth video (head-pose estimator)", "truth", "headpose",
           False),
        _m("fid", "reference", "set", False, "", "1",
           "Frechet distance of Inception-v3 pool features, generated vs ground-truth frames", "truth",
           "inception"),
        _m("fvd", "reference", "set", False, "", "1",
           "Frechet distance of I3D features, generated vs ground-truth clips", "truth", "i3d"),
    )
}  # fmt: skip

#: Weights of the avatar reference metrics that the editing benchmark's registry does not hold.
AVATAR_WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            "syncnet",
            ("sync_c", "sync_d"),
            "files",
            {"syncnet_v2.model": None},
            "syncnet",
            "the SyncNet v2 model of github.com/joonson/syncnet_python (data/syncnet_v2.model), as used by "
            "Wav2Lip's LSE-C / LSE-D evaluation",
        ),
        WeightSpec(
            "arcface",
            ("csim", "acd"),
            "files",
            {"arcface_r100.onnx": None},
            "arcface",
            "an ArcFace IResNet-100 face-recognition model (e.g. insightface's buffalo_l w600k_r50.onnx or "
            "glint360k r100, saved as arcface_r100.onnx) and a face detector for alignment",
        ),
        WeightSpec(
            "headpose",
            ("apd",),
            "files",
            {"motion_extractor.pth": None},
            "headpose",
            "LivePortrait's motion extractor (pretrained_weights/liveportrait/base_models/"
            "motion_extractor.pth) for yaw/pitch/roll, or another head-pose estimator saved under that name",
        ),
    )
}


def weight_status(entry: str, config: dict[str, Any] | None = None) -> WeightStatus:
    """Resolve and verify the weights ``entry`` (from :data:`AVATAR_WEIGHTS` or the benchmark's registry)."""
    if entry in AVATAR_WEIGHTS:
        return resolve_spec(AVATAR_WEIGHTS[entry], config)
    if entry in WEIGHTS:
        return resolve(entry, config)
    raise KeyError(f"unknown weights {entry!r}; known: {', '.join([*AVATAR_WEIGHTS, *WEIGHTS])}")


def skipped(reason: str) -> dict[str, str]:
    """The record of a metric that was not computed (never a number)."""
    return {"status": "skipped", "reason": reason}


def is_skipped(value: object) -> bool:
    return isinstance(value, dict) and value.get("status") == "skipped"


def reference_skip(metric: str, config: dict[str, Any] | None = None) -> dict[str, str] | None:
    """``None`` when reference metric ``metric`` can be computed now, else its skipped record naming the
    weights it needs and what to provide."""
    info = AVATAR_METRICS[metric]
    status = weight_status(info.weights, config)
    if status.status != "ok":
        return skipped(f"needs {info.weights} weights (not available locally): {status.reason}")
    if not info.implemented:
        return skipped(
            f"{info.weights} weights verified at {status.path}, but the {metric} scorer is not implemented "
            "in this version of flowstudio"
        )
    return None


def metric_versions() -> dict[str, str]:
    """``{name: version}`` of every metric (for the report's settings)."""
    return {name: m.version for name, m in AVATAR_METRICS.items()}
