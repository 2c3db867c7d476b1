"""TalkingShapes / avatar: cartoon heads that speak, with a ground-truth structure latent.

A clip is a pure function of a :class:`FaceIdentity` (skin, hair colour and style, eye spacing, face
shape ...), a :class:`~flowstudio.worlds.faces_audio.SpeechSpec` (the voice and what it says) and the
clip settings::

    from flowstudio.worlds.faces import FaceIdentity, render_talking_clip, read_mouth_opening
    from flowstudio.worlds.faces_audio import SpeechSpec

    clip = render_talking_clip(FaceIdentity(seed=1), SpeechSpec(seed=2), seconds=4.0)
    clip.frames          # uint8 (100, 128, 128, 3) RGB at 25 fps
    clip.audio           # float32 (64000,) at 16 kHz
    clip.structure       # StructureLatent: pose (T, 3), translation (T, 3), scale (T, 1),
                         # keypoints (T, 21, 3)
    clip.structure.to_array()   # float32 (T, 70), the LivePortrait-like motion latent
    read_mouth_opening(clip.frames)  # mouth opening read from the pixels, (T,)

Geometry. The head is a superellipsoid (``|x/a_x|^p + |y/a_y|^p + |z/a_z|^p = 1``, the jaw tapered by
the face shape) in a head frame with x to the image right, y down and z away from the camera, in head
units (half the face height is about 1). Eyes, brows, nose and mouth are drawn as decals on its front
surface, so they foreshorten with the pose. A camera-space point is ``scale * R @ p + translation``
with ``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)`` (positive yaw moves the nose to the image right, positive
pitch moves it down, positive roll turns the face clockwise on screen), projected by a pinhole at
:data:`CAMERA_DISTANCE` head units: ``u = W/2 + f x / (D + z)``, ``v = H/2 + f y / (D + z)`` with
``f = HEAD_FRACTION * min(H, W) * D`` (:func:`project_points`).

Structure latent (:class:`StructureLatent`), per frame, float32, ``7 + 3 K`` channels::

    [yaw, pitch, roll,  tx, ty, tz,  scale,  k0x, k0y, k0z, k1x, ...]

with the :data:`KEYPOINT_NAMES` (K = 21) in the head frame *after* expression (lids, lips, mouth
corners and brows move; LivePortrait's canonical keypoints plus expression deltas). The same layout as
:class:`flowstudio.avatar.model.config.StructureLayout`; :func:`structure_array` gives fewer keypoints (in
:data:`KEYPOINT_PRIORITY` order) for configs that use fewer, such as the toy DualForce's 5.

Speech drives the mouth: the opening of frame ``i`` is the speech track's mouth target (viseme
openness x voice envelope) at ``i / fps - mouth_latency`` (:data:`MOUTH_LATENCY`, one frame: the mouth
follows the sound). Head motion is slow noise plus nods that follow the speech energy; blinks are a
Poisson process.

Rendering is numpy (all points of all frames posed and projected at once) plus OpenCV anti-aliased
polygon fills per frame.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from flowstudio.errors import InputError
from flowstudio.worlds.faces_audio import (
    SAMPLE_RATE,
    VISEMES,
    SpeechSpec,
    SpeechTrack,
    frame_times,
    num_frames_for,
    synthesize_speech,
)

logger = logging.getLogger(__name__)

DEFAULT_FPS = 25.0
MOUTH_LATENCY = 0.04  # seconds the mouth follows the sound by (one frame at 25 fps)
CAMERA_DISTANCE = 8.0  # head units from the camera to the head centre at translation z = 0
HEAD_FRACTION = 0.27  # one head unit, as a fraction of min(H, W), at scale 1 and translation z = 0
BASE_TRANSLATION = (0.0, -0.12, 0.0)  # the head sits a little above the frame centre (room for shoulders)
POSE_LIMITS = {"yaw": 0.5, "pitch": 0.32, "roll": 0.25}  # radians

SKIN_TONES: dict[str, tuple[int, int, int]] = {
    "porcelain": (250, 224, 210),
    "light": (241, 194, 167),
    "tan": (214, 160, 120),
    "olive": (198, 158, 108),
    "brown": (160, 108, 72),
    "dark": (106, 72, 52),
}
HAIR_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (32, 28, 30),
    "brown": (96, 62, 38),
    "blond": (226, 196, 122),
    "ginger": (204, 110, 50),
    "grey": (168, 168, 172),
    "blue": (62, 92, 200),
}
HAIR_STYLES = ("short", "bob", "long", "bald", "spiky")
FACE_SHAPES = ("round", "oval", "square", "heart")
EYE_COLORS: dict[str, tuple[int, int, int]] = {
    "brown": (112, 72, 42),
    "blue": (70, 122, 192),
    "green": (72, 142, 92),
    "grey": (122, 132, 142),
}
SHIRT_COLORS: dict[str, tuple[int, int, int]] = {
    "teal": (40, 140, 140),
    "navy": (40, 60, 120),
    "mustard": (220, 180, 60),
    "white": (235, 235, 235),
    "green": (80, 160, 80),
    "purple": (120, 80, 160),
}
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "sky": (190, 215, 235),
    "mint": (200, 235, 210),
    "sand": (235, 222, 192),
    "lilac": (215, 202, 235),
    "grey": (205, 205, 205),
    "peach": (245, 212, 192),
}
BACKGROUNDS = ("plain", "gradient", "vignette")
#: Colour of the mouth interior: unique in the world, so :func:`read_mouth_opening` can key it.
MOUTH_INTERIOR = (122, 14, 36)
_LINE = (40, 30, 32)
_LIP = (190, 82, 92)

# Face shapes: superellipsoid exponent, half-width factor, jaw taper.
_SHAPES = {
    "round": (2.0, 1.0, 0.05),
    "oval": (2.0, 0.9, 0.12),
    "square": (3.2, 0.96, 0.0),
    "heart": (2.2, 1.0, 0.3),
}
_DEPTH = 0.9  # a_z

KEYPOINT_NAMES = (
    "outline_left_temple", "outline_left_cheek", "outline_left_jaw", "chin",
    "outline_right_jaw", "outline_right_cheek", "outline_right_temple",
    "left_brow", "right_brow",
    "left_eye", "left_upper_lid", "right_eye", "right_upper_lid",
    "nose_bridge", "nose_tip",
    "mouth_left", "mouth_right", "upper_lip", "lower_lip",
    "left_ear", "right_ear",
)  # fmt: skip
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
#: Order in which keypoints are kept when a layout asks for fewer (5: nose, lips, eyes).
KEYPOINT_PRIORITY = (
    "nose_tip", "upper_lip", "lower_lip", "left_eye", "right_eye", "mouth_left", "mouth_right", "chin",
    "left_upper_lid", "right_upper_lid", "left_brow", "right_brow", "nose_bridge",
    "outline_left_cheek", "outline_right_cheek", "outline_left_jaw", "outline_right_jaw",
    "outline_left_temple", "outline_right_temple", "left_ear", "right_ear",
)  # fmt: skip
POSE_CHANNELS = 7  # yaw, pitch, roll, tx, ty, tz, scale


# ------------------------------------------------------------------------------------------------
# Identity


@dataclass(frozen=True)
class FaceIdentity:
    """Who speaks: everything about the head that does not change during a clip.

    Attributes:
        skin: one of :data:`SKIN_TONES`.
        hair_color: one of :data:`HAIR_COLORS`.
        hair_style: one of :data:`HAIR_STYLES`.
        face_shape: one of :data:`FACE_SHAPES` (superellipsoid exponent, width and jaw taper).
        eye_color: one of :data:`EYE_COLORS`.
        shirt: one of :data:`SHIRT_COLORS`.
        background: one of :data:`BACKGROUNDS`; its colour is ``background_color``.
        background_color: one of :data:`BACKGROUND_COLORS`.
        eye_spacing: half the distance between the eye centres, head units (0.26-0.4).
        eye_size: eye half-width, head units (0.12-0.17).
        face_width: half-width of the head, head units (0.78-0.95, times the shape's factor).
        face_height: half-height of the head, head units (0.98-1.12).
        nose_length: how far the nose tip sticks out (0.1-0.25).
        mouth_width: mouth half-width at rest (0.18-0.27).
        hairline: head-frame y of the hairline on the forehead (-0.8 to -0.5; the eyes are at
            -0.1 and the brows near -0.35).
        smile: resting smile (0-0.5).
        scale: head size at rest (0.9-1.08).
        seed: draws the head motion, blinks and expression noise together with the speech seed.
    """

    skin: str = "light"
    hair_color: str = "brown"
    hair_style: str = "short"
    face_shape: str = "round"
    eye_color: str = "brown"
    shirt: str = "teal"
    background: str = "plain"
    background_color: str = "sky"
    eye_spacing: float = 0.32
    eye_size: float = 0.14
    face_width: float = 0.86
    face_height: float = 1.04
    nose_length: float = 0.16
    mouth_width: float = 0.22
    hairline: float = -0.6
    smile: float = 0.2
    scale: float = 1.0
    seed: int = 0

    _RANGES = {
        "eye_spacing": (0.26, 0.4),
        "eye_size": (0.12, 0.17),
        "face_width": (0.78, 0.95),
        "face_height": (0.98, 1.12),
        "nose_length": (0.1, 0.25),
        "mouth_width": (0.18, 0.27),
        "hairline": (-0.8, -0.5),
        "smile": (0.0, 0.5),
        "scale": (0.9, 1.08),
    }

    def __post_init__(self) -> None:
        for name, allowed in (
            ("skin", tuple(SKIN_TONES)),
            ("hair_color", tuple(HAIR_COLORS)),
            ("hair_style", HAIR_STYLES),
            ("face_shape", FACE_SHAPES),
            ("eye_color", tuple(EYE_COLORS)),
            ("shirt", tuple(SHIRT_COLORS)),
            ("background", BACKGROUNDS),
            ("background_color", tuple(BACKGROUND_COLORS)),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise InputError(f"FaceIdentity.{name} must be one of {', '.join(allowed)}; got {value!r}")
        for name, (low, high) in self._RANGES.items():
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not low - 1e-9 <= value <= high + 1e-9
            ):
                raise InputError(f"FaceIdentity.{name} must be a number in [{low}, {high}]; got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise InputError(f"FaceIdentity.seed must be an integer in [0, 2**63); got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaceIdentity:
        """Build from :meth:`to_dict` output; unknown keys raise :class:`InputError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown FaceIdentity fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    @property
    def axes(self) -> tuple[float, float, float, float, float]:
        """``(a_x, a_y, a_z, p, jaw)`` of the head superellipsoid."""
        p, width, jaw = _SHAPES[self.face_shape]
        return self.face_width * width, self.face_height, _DEPTH, p, jaw


def random_identity(rng: np.random.Generator) -> FaceIdentity:
    """An identity with every attribute drawn uniformly (categorical) or in its range (numeric)."""

    def pick(options: tuple[str, ...] | list[str]) -> str:
        return options[int(rng.integers(len(options)))]

    numbers = {
        name: round(float(rng.uniform(low, high)), 4) for name, (low, high) in FaceIdentity._RANGES.items()
    }
    return FaceIdentity(
        skin=pick(list(SKIN_TONES)),
        hair_color=pick(list(HAIR_COLORS)),
        hair_style=pick(HAIR_STYLES),
        face_shape=pick(FACE_SHAPES),
        eye_color=pick(list(EYE_COLORS)),
        shirt=pick(list(SHIRT_COLORS)),
        background=pick(BACKGROUNDS),
        background_color=pick(list(BACKGROUND_COLORS)),
        seed=int(rng.integers(2**31)),
        **numbers,
    )


# ------------------------------------------------------------------------------------------------
# Motion and the structure latent


@dataclass(frozen=True)
class FaceMotion:
    """Per-frame controls of a clip, every field float32 ``(T,)``.

    ``yaw``, ``pitch``, ``roll`` in radians; ``tx``, ``ty``, ``tz`` and ``scale`` as in the module
    docstring; ``mouth`` opening in ``[0, 1]``; ``mouth_width`` factor (1 neutral); ``smile``,
    ``blink`` (1 = closed) and ``brow`` raise in ``[0, 1]``; ``gaze_x``, ``gaze_y`` iris offsets as a
    fraction of the eye size.
    """

    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    tz: np.ndarray
    scale: np.ndarray
    mouth: np.ndarray
    mouth_width: np.ndarray
    smile: np.ndarray
    blink: np.ndarray
    brow: np.ndarray
    gaze_x: np.ndarray
    gaze_y: np.ndarray

    @property
    def num_frames(self) -> int:
        return len(self.yaw)

    @classmethod
    def still(
        cls, num_frames: int, identity: FaceIdentity | None = None, **values: float | np.ndarray
    ) -> FaceMotion:
        """A motion at rest (frontal, mouth closed), with any field overridden by a value or array."""
        identity = identity or FaceIdentity()
        base = {
            "yaw": 0.0, "pitch": 0.0, "roll": 0.0, "tx": BASE_TRANSLATION[0], "ty": BASE_TRANSLATION[1],
            "tz": BASE_TRANSLATION[2], "scale": identity.scale, "mouth": 0.0, "mouth_width": 1.0,
            "smile": identity.smile, "blink": 0.0, "brow": 0.0, "gaze_x": 0.0, "gaze_y": 0.0,
        }  # fmt: skip
        unknown = sorted(set(values) - set(base))
        if unknown:
            raise InputError(f"unknown FaceMotion fields {unknown}; known: {sorted(base)}")
        base.update(values)
        return cls(
            **{k: np.broadcast_to(np.asarray(v, np.float32), (num_frames,)).copy() for k, v in base.items()}
        )

    def to_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class StructureLatent:
    """Ground-truth structure per frame, shaped like a LivePortrait motion latent.

    Attributes:
        pose: float32 ``(T, 3)`` yaw, pitch, roll in radians.
        translation: float32 ``(T, 3)`` head units (camera frame, see the module docstring).
        scale: float32 ``(T, 1)``.
        keypoints: float32 ``(T, K, 3)`` in the head frame, after expression.
        names: the keypoint names, in order.

    :meth:`to_array` lays a frame out as ``[yaw, pitch, roll, tx, ty, tz, scale, k0x, k0y, k0z, ...]``.
    """

    pose: np.ndarray
    translation: np.ndarray
    scale: np.ndarray
    keypoints: np.ndarray
    names: tuple[str, ...] = KEYPOINT_NAMES

    @property
    def num_frames(self) -> int:
        return int(self.pose.shape[0])

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[1])

    @property
    def channels(self) -> int:
        return POSE_CHANNELS + 3 * self.num_keypoints

    def to_array(self) -> np.ndarray:
        """float32 ``(T, 7 + 3 K)``."""
        t = self.num_frames
        return np.concatenate(
            [self.pose, self.translation, self.scale.reshape(t, 1), self.keypoints.reshape(t, -1)], axis=1
        ).astype(np.float32)

    @classmethod
    def from_array(cls, array: np.ndarray, names: tuple[str, ...] | None = None) -> StructureLatent:
        """Invert :meth:`to_array`; ``names`` defaults to :data:`KEYPOINT_NAMES` (or the first
        :data:`KEYPOINT_PRIORITY` names when the width says fewer keypoints)."""
        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] < POSE_CHANNELS + 3 or (array.shape[1] - POSE_CHANNELS) % 3:
            raise InputError(f"a structure array must be (T, 7 + 3K), got shape {array.shape}")
        k = (array.shape[1] - POSE_CHANNELS) // 3
        if names is None:
            names = KEYPOINT_NAMES if k == NUM_KEYPOINTS else _priority_names(k)
        if len(names) != k:
            raise InputError(f"structure array has {k} keypoints but {len(names)} names were given")
        return cls(
            pose=array[:, 0:3].copy(),
            translation=array[:, 3:6].copy(),
            scale=array[:, 6:7].copy(),
            keypoints=array[:, 7:].reshape(-1, k, 3).copy(),
            names=tuple(names),
        )

    def select(self, num_keypoints: int) -> StructureLatent:
        """The same latent with the first ``num_keypoints`` of :data:`KEYPOINT_PRIORITY` (in that order)."""
        names = _priority_names(num_keypoints)
        missing = [n for n in names if n not in self.names]
        if missing:
            raise InputError(f"this latent has no keypoints {missing}")
        index = [self.names.index(n) for n in names]
        return dataclasses.replace(self, keypoints=self.keypoints[:, index].copy(), names=names)

    def posed_keypoints(self) -> np.ndarray:
        """Camera-frame keypoints ``scale * R @ k + translation``, float32 ``(T, K, 3)``."""
        rotation = rotation_matrices(self.pose[:, 0], self.pose[:, 1], self.pose[:, 2])
        posed = np.einsum("tij,tkj->tki", rotation, self.keypoints) * self.scale.reshape(-1, 1, 1)
        return (posed + self.translation[:, None, :]).astype(np.float32)


def _priority_names(num_keypoints: int) -> tuple[str, ...]:
    if (
        isinstance(num_keypoints, bool)
        or not isinstance(num_keypoints, int)
        or not 1 <= num_keypoints <= NUM_KEYPOINTS
    ):
        raise InputError(f"num_keypoints must be an integer from 1 to {NUM_KEYPOINTS}, got {num_keypoints!r}")
    return KEYPOINT_PRIORITY[:num_keypoints]


def structure_array(latent: StructureLatent, num_keypoints: int | Any = NUM_KEYPOINTS) -> np.ndarray:
    """The ``(T, 7 + 3 K)`` array for a structure layout of ``num_keypoints`` keypoints.

    ``num_keypoints`` may also be an object with a ``num_keypoints`` attribute, such as
    :class:`flowstudio.avatar.model.config.StructureLayout` (``config.structure``): the toy DualForce uses 5
    (nose tip, upper and lower lip, eyes: 22 channels), the MOVA presets 21 (all, 70 channels).
    With all :data:`NUM_KEYPOINTS`, the order is :data:`KEYPOINT_NAMES`; with fewer, the order is
    :data:`KEYPOINT_PRIORITY`.
    """
    k = getattr(num_keypoints, "num_keypoints", num_keypoints)
    if k == latent.num_keypoints and latent.names == KEYPOINT_NAMES:
        return latent.to_array()
    return latent.select(k).to_array()


def rotation_matrices(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """``Rz(roll) @ Rx(pitch) @ Ry(yaw)`` per frame, float64 ``(T, 3, 3)`` (x right, y down, z away)."""
    yaw, pitch, roll = (np.asarray(v, np.float64).reshape(-1) for v in (yaw, pitch, roll))
    cy, sy, cp, sp, cr, sr = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
    )
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    ry = np.stack(
        [np.stack([cy, zero, -sy], -1), np.stack([zero, one, zero], -1), np.stack([sy, zero, cy], -1)], -2
    )
    rx = np.stack(
        [np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1), np.stack([zero, sp, cp], -1)], -2
    )
    rz = np.stack(
        [np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1), np.stack([zero, zero, one], -1)], -2
    )
    return rz @ rx @ ry


def project_points(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pinhole projection of camera-frame points ``(..., 3)`` to pixel coordinates ``(..., 2)`` (x, y)."""
    unit = min(height, width)
    focal = HEAD_FRACTION * unit * CAMERA_DISTANCE
    depth = np.maximum(CAMERA_DISTANCE + points[..., 2], 1e-3)
    return np.stack(
        [width / 2 + focal * points[..., 0] / depth, height / 2 + focal * points[..., 1] / depth], -1
    ).astype(np.float32)


def project_keypoints(latent: StructureLatent, height: int = 128, width: int = 128) -> np.ndarray:
    """Pixel positions ``(T, K, 2)`` of the latent's keypoints in a ``height x width`` render."""
    return project_points(latent.posed_keypoints(), height, width)


# ------------------------------------------------------------------------------------------------
# Head geometry (head frame, all frames at once)


def _surface(
    identity: FaceIdentity, x: np.ndarray, y: np.ndarray, lift: np.ndarray | float = 0.0
) -> np.ndarray:
    """Front-surface points at base coordinates ``(x, y)`` (before the jaw taper), lifted ``lift``
    towards the camera; ``(..., 3)``."""
    ax, ay, az, p, jaw = identity.axes
    inside = np.maximum(1.0 - np.abs(x / ax) ** p - np.abs(y / ay) ** p, 0.0)
    z = -az * inside ** (1.0 / p) - lift
    taper = 1.0 - jaw * np.clip(y / ay, 0.0, 1.0) ** 2
    x, y, z = np.broadcast_arrays(x * taper, y, z)
    return np.stack([x, y, z], -1)


def _shell(
    identity: FaceIdentity, grow: float = 1.0, grow_y: float | None = None, n_u: int = 28, n_v: int = 14
) -> np.ndarray:
    """Points ``(n_u * n_v, 3)`` on the whole head superellipsoid, scaled by ``grow``."""
    ax, ay, az, p, jaw = identity.axes
    u = np.linspace(-np.pi, np.pi, n_u, endpoint=False)
    v = np.linspace(-np.pi / 2, np.pi / 2, n_v)
    u, v = np.meshgrid(u, v, indexing="ij")
    e = 2.0 / p

    def f(w: np.ndarray) -> np.ndarray:
        return np.sign(w) * np.abs(w) ** e

    y = ay * f(np.sin(v))
    x = ax * f(np.cos(v)) * f(np.cos(u)) * (1.0 - jaw * np.clip(y / ay, 0.0, 1.0) ** 2)
    z = az * f(np.cos(v)) * f(np.sin(u))
    points = np.stack([x.ravel() * grow, y.ravel() * (grow_y or grow), z.ravel() * grow], -1)
    return points


def _keypoints(identity: FaceIdentity, motion: FaceMotion) -> np.ndarray:
    """Head-frame keypoints after expression, float64 ``(T, 21, 3)``."""
    t = motion.num_frames
    ax, ay, _, _, _ = identity.axes
    es, ew = identity.eye_spacing, identity.eye_size
    eh = 0.72 * ew
    ey = -0.1 * ay
    zeros = np.zeros(t)
    mouth = _mouth_params(identity, motion)
    lid = np.maximum(ey - eh, ey - eh + 2 * eh * motion.blink)
    brow_y = ey - 0.24 - 0.06 * motion.brow
    xs = np.stack([
        np.full(t, -0.86 * ax), np.full(t, -0.9 * ax), np.full(t, -0.66 * ax), zeros,
        np.full(t, 0.66 * ax), np.full(t, 0.9 * ax), np.full(t, 0.86 * ax),
        np.full(t, -es), np.full(t, es),
        np.full(t, -es), np.full(t, -es), np.full(t, es), np.full(t, es),
        zeros, zeros,
        -mouth["half_width"], mouth["half_width"], zeros, zeros,
    ], 1)  # fmt: skip
    ys = np.stack([
        np.full(t, -0.45 * ay), np.full(t, 0.1 * ay), np.full(t, 0.62 * ay), np.full(t, 0.97 * ay),
        np.full(t, 0.62 * ay), np.full(t, 0.1 * ay), np.full(t, -0.45 * ay),
        brow_y, brow_y,
        np.full(t, ey), lid, np.full(t, ey), lid,
        np.full(t, -0.02 * ay), np.full(t, 0.2 * ay),
        mouth["corner_y"], mouth["corner_y"], mouth["upper_y"], mouth["lower_y"],
    ], 1)  # fmt: skip
    lift = np.zeros(19)
    lift[14] = identity.nose_length
    lift[[0, 1, 2, 4, 5, 6]] = -0.05  # outline points a little behind the surface they sit on
    front = _surface(identity, xs, ys, lift)
    ears = np.array([[-ax * 1.01, 0.05 * ay, 0.08], [ax * 1.01, 0.05 * ay, 0.08]])
    return np.concatenate([front, np.broadcast_to(ears, (t, 2, 3))], axis=1)


def _mouth_params(identity: FaceIdentity, motion: FaceMotion) -> dict[str, np.ndarray]:
    ay = identity.face_height
    o = np.clip(motion.mouth.astype(np.float64), 0.0, 1.0)
    smile = np.clip(motion.smile.astype(np.float64), 0.0, 1.0)
    centre = 0.5 * ay
    return {
        "open": o,
        "smile": smile,
        "centre": np.full_like(o, centre),
        "half_width": identity.mouth_width * motion.mouth_width * (1.0 + 0.2 * smile),
        "corner_y": centre - 0.07 * smile,
        "upper_y": centre - 0.07 * o,
        "lower_y": centre + 0.22 * o + 0.03 * smile,
    }


def structure_from_motion(identity: FaceIdentity, motion: FaceMotion) -> StructureLatent:
    """The ground-truth structure latent of ``motion`` for ``identity``."""
    t = motion.num_frames
    return StructureLatent(
        pose=np.stack([motion.yaw, motion.pitch, motion.roll], 1).astype(np.float32),
        translation=np.stack([motion.tx, motion.ty, motion.tz], 1).astype(np.float32),
        scale=np.asarray(motion.scale, np.float32).reshape(t, 1),
        keypoints=_keypoints(identity, motion).astype(np.float32),
    )


# ------------------------------------------------------------------------------------------------
# Motion from speech


def _slow_noise(
    rng: np.random.Generator,
    times: np.ndarray,
    amplitude: float,
    low: float = 0.05,
    high: float = 0.4,
    terms: int = 3,
) -> np.ndarray:
    out = np.zeros_like(times)
    for _ in range(terms):
        freq, phase, weight = rng.uniform(low, high), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.0)
        out += weight * np.sin(2 * np.pi * freq * times + phase)
    return amplitude * out / math.sqrt(terms / 2)


def _gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return values
    radius = max(1, int(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, radius, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def face_motion(
    identity: FaceIdentity,
    track: SpeechTrack,
    num_frames: int,
    fps: float = DEFAULT_FPS,
    *,
    mouth_latency: float = MOUTH_LATENCY,
    seed: int | None = None,
) -> FaceMotion:
    """Per-frame controls of a speaking head.

    The mouth opening and width at frame ``i`` are the track's at ``i / fps - mouth_latency``. Head
    motion is slow noise (sums of sinusoids below 0.4 Hz) plus a nod that follows the speech energy
    (the envelope smoothed over about 0.2 s, without delay): the head dips while speaking. Blinks are a
    Poisson process (about one every 4 s, 4 frames long). Random draws come from
    ``(identity.seed, seed)``.
    """
    rng = np.random.default_rng([identity.seed, 0 if seed is None else seed, 17])
    times = frame_times(num_frames, fps)
    lagged = times - mouth_latency
    mouth = track.at(lagged, track.mouth)
    width = np.where((lagged >= 0) & (lagged <= track.seconds), track.at(lagged, track.width), 1.0)
    energy = _gaussian_smooth(track.at(times, track.envelope).astype(np.float64), 0.1 * fps)
    speaking = energy - float(np.mean(energy))
    nod_gain = float(rng.uniform(0.12, 0.25))

    yaw = _slow_noise(rng, times, 0.16) + 0.04 * _slow_noise(rng, times, 1.0, 0.8, 1.5) * energy
    pitch = _slow_noise(rng, times, 0.06) + nod_gain * speaking
    roll = _slow_noise(rng, times, 0.05)
    tx = BASE_TRANSLATION[0] + _slow_noise(rng, times, 0.07)
    ty = BASE_TRANSLATION[1] + _slow_noise(rng, times, 0.03) + 0.04 * speaking
    tz = BASE_TRANSLATION[2] + _slow_noise(rng, times, 0.35, 0.03, 0.2)
    scale = identity.scale * (1.0 + _slow_noise(rng, times, 0.02, 0.03, 0.2))
    smile = np.clip(identity.smile + _slow_noise(rng, times, 0.15, 0.05, 0.25), 0.0, 1.0)
    brow = np.clip(
        _gaussian_smooth(track.at(times, track.envelope).astype(np.float64) ** 2, 0.08 * fps) * 1.5
        + _slow_noise(rng, times, 0.1),
        0.0,
        1.0,
    )
    blink = np.zeros(num_frames)
    profile = np.array([0.5, 1.0, 0.7, 0.25])
    pos = float(rng.exponential(2.5))
    while pos < num_frames / fps:
        start = int(pos * fps)
        span = min(len(profile), num_frames - start)
        blink[start : start + span] = np.maximum(blink[start : start + span], profile[:span])
        pos += 0.4 + float(rng.exponential(3.5))
    gaze_x = np.clip(_slow_noise(rng, times, 0.15, 0.1, 0.6), -0.3, 0.3)
    gaze_y = np.clip(_slow_noise(rng, times, 0.08, 0.1, 0.6), -0.15, 0.15)
    fields = {
        "yaw": np.clip(yaw, -POSE_LIMITS["yaw"], POSE_LIMITS["yaw"]),
        "pitch": np.clip(pitch, -POSE_LIMITS["pitch"], POSE_LIMITS["pitch"]),
        "roll": np.clip(roll, -POSE_LIMITS["roll"], POSE_LIMITS["roll"]),
        "tx": tx, "ty": ty, "tz": tz, "scale": scale, "mouth": mouth, "mouth_width": width,
        "smile": smile, "blink": blink, "brow": brow, "gaze_x": gaze_x, "gaze_y": gaze_y,
    }  # fmt: skip
    return FaceMotion(**{k: np.asarray(v, np.float32) for k, v in fields.items()})


# ------------------------------------------------------------------------------------------------
# Rendering


def check_face_size(height: int, width: int) -> None:
    """Raise :class:`InputError` unless both sides are positive multiples of 32."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 32 or value % 32:
            raise InputError(
                f"{name} must be a positive multiple of 32 (32, 64, 96, 128, ...), got {value!r}"
            )


_SHIFT = 4
_ONE = 1 << _SHIFT


def _color(rgb: tuple[int, int, int] | np.ndarray, factor: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(np.clip(round(c * factor), 0, 255)) for c in rgb)  # type: ignore[return-value]


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], w: float) -> tuple[int, int, int]:
    return tuple(int(round((1 - w) * x + w * y)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _background(identity: FaceIdentity, height: int, width: int) -> np.ndarray:
    base = np.asarray(BACKGROUND_COLORS[identity.background_color], np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if identity.background == "gradient":
        shade = 1.05 - 0.2 * yy / height
    elif identity.background == "vignette":
        r = np.hypot((xx - width / 2) / width, (yy - height / 2) / height)
        shade = 1.04 - 0.45 * r**2
    else:
        shade = np.ones_like(yy)
    return np.clip(base * shade[..., None], 0, 255).astype(np.uint8)


def _fill(image: np.ndarray, points: np.ndarray, color: tuple[int, int, int]) -> None:
    cv2.fillPoly(image, [np.round(points * _ONE).astype(np.int32)], color, cv2.LINE_AA, _SHIFT)


def _hull(image: np.ndarray, points: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    hull = cv2.convexHull(np.round(points * _ONE).astype(np.int32))
    cv2.fillConvexPoly(image, hull, color, cv2.LINE_AA, _SHIFT)
    return hull


def _line(
    image: np.ndarray, points: np.ndarray, color: tuple[int, int, int], thickness: int, closed: bool = False
) -> None:
    cv2.polylines(
        image, [np.round(points * _ONE).astype(np.int32)], closed, color, thickness, cv2.LINE_AA, _SHIFT
    )


_RING = np.linspace(0, 2 * np.pi, 20, endpoint=False)
_MOUTH_S = np.linspace(-1.0, 1.0, 15)


def render_frames(
    identity: FaceIdentity, motion: FaceMotion, height: int = 128, width: int = 128
) -> np.ndarray:
    """Render uint8 ``(T, height, width, 3)`` RGB frames of ``identity`` moving as ``motion``.

    Raises:
        InputError: a side is not a multiple of 32.
    """
    if not isinstance(identity, FaceIdentity):
        raise InputError(f"identity must be a FaceIdentity, got {type(identity).__name__}")
    check_face_size(height, width)
    height, width = int(height), int(width)
    t = motion.num_frames
    unit = min(height, width)
    ax, ay, az, _, _ = identity.axes
    skin = SKIN_TONES[identity.skin]
    hair = HAIR_COLORS[identity.hair_color]
    lip = _mix(skin, _LIP, 0.55)
    thin = max(1, round(unit / 128))
    thick = max(1, round(unit / 50))

    # --- every point of every frame, head frame --------------------------------------------------
    groups: dict[str, np.ndarray] = {}
    groups["shell"] = np.broadcast_to(_shell(identity), (t, 28 * 14, 3))
    if identity.hair_style != "bald":
        cap = _shell(identity, 1.07, 1.09)
        keep = cap[:, 1] < identity.hairline * ay
        groups["cap"] = np.broadcast_to(cap[keep], (t, int(keep.sum()), 3))
        back = _shell(identity, 1.1, 1.08)
        bottom = {"short": 0.1, "spiky": 0.1, "bob": 0.45, "long": 1.0}[identity.hair_style] * ay
        back = back[(back[:, 2] > -0.2) & (back[:, 1] < bottom)]
        if identity.hair_style == "long":
            back = np.concatenate(
                [
                    back,
                    [
                        [-1.12 * ax, 1.55 * ay, 0.2],
                        [1.12 * ax, 1.55 * ay, 0.2],
                        [-0.8 * ax, 1.6 * ay, 0.3],
                        [0.8 * ax, 1.6 * ay, 0.3],
                    ],
                ]
            )
        groups["back_hair"] = np.broadcast_to(back, (t, len(back), 3))
    if identity.hair_style == "spiky":
        spikes = []
        for x0 in np.linspace(-0.6, 0.6, 5):
            base_y = -ay * 1.0 * math.sqrt(max(0.0, 1 - (x0 / (ax * 1.1)) ** 2)) - 0.02
            spikes += [
                [x0 - 0.16, base_y + 0.12, -0.1],
                [x0, base_y - 0.28, -0.1],
                [x0 + 0.16, base_y + 0.12, -0.1],
            ]
        groups["spikes"] = np.broadcast_to(np.array(spikes), (t, 15, 3))
    ear = np.stack([np.zeros_like(_RING), 0.05 * ay + 0.2 * np.sin(_RING), 0.08 + 0.13 * np.cos(_RING)], -1)
    groups["left_ear"] = np.broadcast_to(ear + [-ax * 1.01, 0, 0], (t, 20, 3))
    groups["right_ear"] = np.broadcast_to(ear + [ax * 1.01, 0, 0], (t, 20, 3))

    es, ew = identity.eye_spacing, identity.eye_size
    eh, ey = 0.72 * ew, -0.1 * ay
    lid = (ey - eh + 2 * eh * np.clip(motion.blink, 0, 1))[:, None].astype(np.float64)
    ring_x, ring_y = np.cos(_RING), np.sin(_RING)
    iris_r = 0.78 * eh
    for side, sign in (("left", -1.0), ("right", 1.0)):
        cx = sign * es
        x = np.broadcast_to(cx + ew * ring_x, (t, 20))
        y = np.maximum(ey + eh * ring_y, lid)
        groups[f"{side}_eye"] = _surface(identity, x, y, 0.005)
        ix = cx + (motion.gaze_x[:, None] * ew * 0.4) + iris_r * ring_x
        iy = ey + motion.gaze_y[:, None] * eh * 0.4 + iris_r * ring_y
        groups[f"{side}_iris"] = _surface(
            identity, ix, np.clip(np.maximum(iy, lid), None, ey + eh * 0.95), 0.006
        )
        px = cx + (motion.gaze_x[:, None] * ew * 0.4) + 0.45 * iris_r * ring_x
        py = ey + motion.gaze_y[:, None] * eh * 0.4 + 0.45 * iris_r * ring_y
        groups[f"{side}_pupil"] = _surface(identity, px, np.maximum(py, lid), 0.007)
        brow_y = (ey - 0.24 - 0.06 * motion.brow)[:, None] + np.array([0.04, 0.0, 0.03])
        groups[f"{side}_brow"] = _surface(
            identity, np.broadcast_to(cx + sign * np.array([-0.13, 0.0, 0.13]), (t, 3)), brow_y, 0.01
        )
    nose = _surface(
        identity,
        np.array([0.0, 0.0, -0.09, 0.09]),
        np.array([-0.02, 0.2, 0.27, 0.27]) * ay,
        np.array([0.0, identity.nose_length, 0.03, 0.03]),
    )
    groups["nose"] = np.broadcast_to(nose, (t, 4, 3))
    m = _mouth_params(identity, motion)
    s = _MOUTH_S[None, :]
    mx = m["half_width"][:, None] * s
    upper = m["centre"][:, None] - 0.07 * m["open"][:, None] * (1 - s**2) - 0.07 * m["smile"][:, None] * s**2
    lower = (
        m["centre"][:, None]
        + 0.22 * m["open"][:, None] * (1 - s**2) ** 0.7
        - 0.07 * m["smile"][:, None] * s**2
        + 0.03 * m["smile"][:, None] * (1 - s**2)
    )
    groups["upper_lip"] = _surface(identity, mx, upper, 0.01)
    groups["lower_lip"] = _surface(identity, mx, lower, 0.01)

    names = list(groups)
    sizes = [groups[n].shape[1] for n in names]
    allpoints = np.concatenate([groups[n] for n in names], axis=1)
    rotation = rotation_matrices(motion.yaw, motion.pitch, motion.roll)
    posed = np.einsum("tij,tpj->tpi", rotation, allpoints) * motion.scale.astype(np.float64)[:, None, None]
    posed += np.stack([motion.tx, motion.ty, motion.tz], 1)[:, None, :]
    screen = project_points(posed, height, width)
    split = dict(zip(names, np.split(screen, np.cumsum(sizes)[:-1], axis=1), strict=True))
    centre = project_points(np.stack([motion.tx, motion.ty, motion.tz], 1).astype(np.float64), height, width)
    head_px = HEAD_FRACTION * unit * motion.scale * CAMERA_DISTANCE / (CAMERA_DISTANCE + motion.tz)

    # --- draw ------------------------------------------------------------------------------------
    background = _background(identity, height, width)
    frames = np.empty((t, height, width, 3), np.uint8)
    shirt = SHIRT_COLORS[identity.shirt]
    eye_color = EYE_COLORS[identity.eye_color]
    for i in range(t):
        image = background.copy()
        cx, cy = float(centre[i, 0]), float(centre[i, 1])
        r = float(head_px[i])
        neck = np.array(
            [
                [cx - 0.38 * r, cy + 0.5 * r],
                [cx + 0.38 * r, cy + 0.5 * r],
                [cx + 0.45 * r, cy + 1.9 * r],
                [cx - 0.45 * r, cy + 1.9 * r],
            ]
        )
        _fill(image, neck, _color(skin, 0.82))
        sx = 0.6 * cx + 0.4 * width / 2
        shoulders = np.stack([sx + 1.6 * r * np.cos(_RING), cy + 2.25 * r + 0.75 * r * np.sin(_RING)], -1)
        _fill(image, shoulders, shirt)
        if "back_hair" in split:
            _hull(image, split["back_hair"][i], _color(hair, 0.85))
        for side in ("left_ear", "right_ear"):
            _fill(image, split[side][i], _color(skin, 0.92))
        hull = _hull(image, split["shell"][i], skin)
        cv2.polylines(image, [hull], True, _color(skin, 0.6), thin, cv2.LINE_AA, _SHIFT)
        if "cap" in split:
            _hull(image, split["cap"][i], hair)
        if "spikes" in split:
            for k in range(5):
                _fill(image, split["spikes"][i, 3 * k : 3 * k + 3], hair)
        n = split["nose"][i]
        _fill(image, n[[1, 3, 2]], _color(skin, 0.78))
        _line(image, n[[0, 1]], _color(skin, 0.7), thin)
        for side in ("left", "right"):
            _fill(image, split[f"{side}_eye"][i], (250, 250, 250))
            _fill(image, split[f"{side}_iris"][i], eye_color)
            _fill(image, split[f"{side}_pupil"][i], (20, 20, 24))
            _line(image, split[f"{side}_eye"][i], _LINE, thin, closed=True)
            _line(image, split[f"{side}_brow"][i], _color(hair, 0.7), thick)
        if m["open"][i] > 0.04:  # below, the interior is under half a pixel high: lips only
            interior = np.concatenate([split["upper_lip"][i], split["lower_lip"][i][::-1]])
            _fill(image, interior, MOUTH_INTERIOR)
        _line(image, split["upper_lip"][i], lip, thin)
        _line(image, split["lower_lip"][i], lip, thin)
        frames[i] = image
    return frames


# ------------------------------------------------------------------------------------------------
# Clips


@dataclass(frozen=True)
class TalkingClip:
    """Output of :func:`render_talking_clip`.

    Attributes:
        frames: uint8 ``(T, H, W, 3)`` RGB.
        audio: float32 ``(N,)`` in ``[-1, 1]`` at ``sample_rate``.
        sample_rate: Hz.
        fps: frames per second.
        structure: the ground-truth :class:`StructureLatent`.
        motion: the per-frame controls (:class:`FaceMotion`).
        loudness: float32 ``(T,)``: RMS of the audio in a 40 ms window centred on each frame time.
        viseme: int8 ``(T,)``: viseme class (:data:`~flowstudio.worlds.faces_audio.VISEMES`) driving
            each frame (at the frame time minus the latency).
        mouth_latency: seconds the mouth follows the sound by.
        track: the speech track (waveform, envelope, visemes at the audio rate).
    """

    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int
    fps: float
    structure: StructureLatent
    motion: FaceMotion
    loudness: np.ndarray
    viseme: np.ndarray
    mouth_latency: float
    track: SpeechTrack

    @property
    def mouth_opening(self) -> np.ndarray:
        """Ground-truth mouth opening per frame, float32 ``(T,)`` in ``[0, 1]``."""
        return self.motion.mouth

    @property
    def blink(self) -> np.ndarray:
        return self.motion.blink


def render_talking_clip(
    identity: FaceIdentity,
    speech: SpeechSpec | SpeechTrack,
    seconds: float = 4.0,
    height: int = 128,
    width: int = 128,
    fps: float = DEFAULT_FPS,
    *,
    mouth_latency: float = MOUTH_LATENCY,
    sample_rate: int = SAMPLE_RATE,
    motion_seed: int | None = None,
) -> TalkingClip:
    """Render ``identity`` speaking ``speech`` for ``seconds`` (``round(seconds * fps)`` frames).

    Args:
        identity: the head.
        speech: a spec (synthesised here) or an already synthesised track (cut or padded with
            silence to ``seconds``).
        seconds: clip length.
        height, width: multiples of 32.
        fps: frame rate.
        mouth_latency: seconds the mouth follows the sound by (0 to 0.2).
        sample_rate: audio rate when ``speech`` is a spec.
        motion_seed: seeds head motion and blinks with ``identity.seed``; defaults to the speech seed.

    Raises:
        InputError: an argument is invalid.
    """
    check_face_size(height, width)
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 1 <= fps <= 120:
        raise InputError(f"fps must be a number from 1 to 120, got {fps!r}")
    if (
        isinstance(mouth_latency, bool)
        or not isinstance(mouth_latency, int | float)
        or not 0 <= mouth_latency <= 0.2
    ):
        raise InputError(f"mouth_latency must be a number of seconds from 0 to 0.2, got {mouth_latency!r}")
    if isinstance(speech, SpeechSpec):
        track = synthesize_speech(speech, seconds, sample_rate)
        default_seed = speech.seed
    elif isinstance(speech, SpeechTrack):
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0.2 <= seconds <= 3600:
            raise InputError(f"seconds must be a number from 0.2 to 3600, got {seconds!r}")
        track = _fit_track(speech, seconds)
        default_seed = 0
    else:
        raise InputError(f"speech must be a SpeechSpec or a SpeechTrack, got {type(speech).__name__}")
    num_frames = num_frames_for(seconds, fps)
    motion = face_motion(
        identity,
        track,
        num_frames,
        fps,
        mouth_latency=mouth_latency,
        seed=default_seed if motion_seed is None else motion_seed,
    )
    frames = render_frames(identity, motion, height, width)
    times = frame_times(num_frames, fps)
    index = np.clip(
        np.round((times - mouth_latency) * track.sample_rate).astype(np.int64), -1, len(track.viseme) - 1
    )
    viseme = np.where(index >= 0, track.viseme[np.maximum(index, 0)], VISEMES.index("silence")).astype(
        np.int8
    )
    return TalkingClip(
        frames=frames,
        audio=track.waveform,
        sample_rate=track.sample_rate,
        fps=float(fps),
        structure=structure_from_motion(identity, motion),
        motion=motion,
        loudness=track.loudness(times),
        viseme=viseme,
        mouth_latency=float(mouth_latency),
        track=track,
    )


def _fit_track(track: SpeechTrack, seconds: float) -> SpeechTrack:
    n = int(round(seconds * track.sample_rate))
    if n == len(track.waveform):
        return track

    def fit(values: np.ndarray, fill: float) -> np.ndarray:
        if len(values) >= n:
            return values[:n]
        return np.concatenate([values, np.full(n - len(values), fill, values.dtype)])

    return dataclasses.replace(
        track,
        waveform=fit(track.waveform, 0.0),
        envelope=fit(track.envelope, 0.0),
        mouth=fit(track.mouth, 0.0),
        width=fit(track.width, 1.0),
        viseme=fit(track.viseme, 0),
    )


# ------------------------------------------------------------------------------------------------
# Reading the mouth from pixels


def mouth_interior_mask(frames: np.ndarray) -> np.ndarray:
    """Soft mask ``(T, H, W)`` in ``[0, 1]`` of the mouth interior colour (:data:`MOUTH_INTERIOR`):
    dark, strongly red over green. No other colour of the world comes close, also after H.264."""
    f = frames.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    return (
        np.clip((r - g - 45.0) / 30.0, 0, 1)
        * np.clip((75.0 - g) / 20.0, 0, 1)
        * np.clip((100.0 - luma) / 20.0, 0, 1)
    )


def read_mouth_opening(frames: np.ndarray) -> np.ndarray:
    """Mouth opening read from the pixels, float32 ``(T,)``: the mean height of the mouth interior
    over the columns holding at least one pixel of it (soft mask of :func:`mouth_interior_mask`), as a
    fraction of ``min(H, W)``; 0 when closed.

    Works on renders and on decoded videos of the world (its mouth interior colour is unique). It is
    an analytic reader for lip-sync metrics: correlation with the ground-truth opening is about 0.97
    on renders; the scale depends on head size and pitch, so compare it over time (correlation,
    offset), not in absolute value.
    """
    if (
        not isinstance(frames, np.ndarray)
        or frames.ndim != 4
        or frames.shape[-1] != 3
        or frames.dtype != np.uint8
    ):
        raise InputError(
            "frames must be a uint8 numpy array (T, H, W, 3), got "
            f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}"
        )
    column_sums = mouth_interior_mask(frames).sum(axis=1)  # (T, W): interior height per column
    full = column_sums >= 1.0  # a column counts from one pixel of interior (edge antialiasing ignored)
    height = np.where(full, column_sums, 0.0).sum(axis=1) / np.maximum(full.sum(axis=1), 1)
    return (height / min(frames.shape[1:3])).astype(np.float32)
