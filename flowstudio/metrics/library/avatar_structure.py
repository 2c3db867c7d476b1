"""The generated structure latent (DualForce's structure tower: head pose, translation, scale, 3D
keypoints) against the ground truth, and whether its poses are plausible
(:func:`flowstudio.avatar.evaluation.metrics.structure_error`,
:func:`~flowstudio.avatar.evaluation.metrics.pose_plausibility`)."""

from __future__ import annotations

from typing import Any

from flowstudio.avatar.evaluation.metrics import pose_plausibility, structure_error
from flowstudio.metrics.inputs import Inputs
from flowstudio.metrics.registry import Skip, Value, metric

AVATAR = ("avatar",)
BOTH = ("structure", "truth_structure")


def _errors(x: Inputs) -> dict[str, float]:
    return x.cached("structure_error", lambda: structure_error(x["structure"], x["truth_structure"]))


def _pose(x: Inputs) -> dict[str, Any]:
    return x.cached("pose", lambda: pose_plausibility(x["structure"], x.get("truth_structure")))


@metric(
    "structure_err_pose",
    suites=AVATAR,
    tier="offline",
    higher_is_better=False,
    unit="rad",
    version="1",
    description="MAE of generated yaw/pitch/roll against the ground truth",
    needs=BOTH,
)
def structure_err_pose(x: Inputs) -> Value:
    return _errors(x)["pose"]


@metric(
    "structure_err_translation_scale",
    suites=AVATAR,
    tier="offline",
    higher_is_better=False,
    unit="head units",
    version="1",
    description="MAE of generated tx/ty/tz/scale against the ground truth",
    needs=BOTH,
)
def structure_err_translation_scale(x: Inputs) -> Value:
    return _errors(x)["translation_scale"]


@metric(
    "structure_err_keypoints",
    suites=AVATAR,
    tier="offline",
    higher_is_better=False,
    unit="head units",
    version="1",
    description="MAE of generated 3D keypoints against the ground truth",
    needs=BOTH,
)
def structure_err_keypoints(x: Inputs) -> Value:
    return _errors(x)["keypoints"]


@metric(
    "pose_in_limits",
    suites=AVATAR,
    tier="offline",
    higher_is_better=True,
    unit="fraction",
    version="1",
    description="frames whose yaw, pitch and roll are within the world's POSE_LIMITS",
    needs=("structure",),
)
def pose_in_limits(x: Inputs) -> Value:
    return _pose(x)["pose_in_limits"]


@metric(
    "pose_velocity_w1",
    suites=AVATAR,
    tier="offline",
    higher_is_better=False,
    unit="rad/frame",
    version="1",
    needs=BOTH,
    description="1-D Wasserstein distance of frame-to-frame angle changes, generated vs truth (mean of 3)",
)
def pose_velocity_w1(x: Inputs) -> Value:
    pose = _pose(x)
    x.detail(
        "pose_velocity_w1_per_angle",
        {k.rsplit("_", 1)[1]: v for k, v in pose.items() if k.startswith("pose_velocity_w1_")},
    )
    if "pose_velocity_w1" not in pose:
        return Skip("fewer than 2 structure frames: no frame-to-frame velocity")
    return pose["pose_velocity_w1"]
