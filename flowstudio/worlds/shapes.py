"""ShapeWorld / commerce: procedural product clips with exact masks and ground-truth edits.

One product (a shape with a colour and a material) on a background, under a simple camera or
turntable motion, in a render style. Everything is a pure function of a :class:`SceneSpec`, so the
same spec gives the same bytes, and an edited spec (one attribute changed) gives the exact
ground-truth edited clip.

Rendering is vectorised numpy/OpenCV, no per-pixel Python:

1. the background is drawn once on a canvas a little wider than the frame (procedural textures
   from ``spec.seed``) and warped per frame by the camera (pan, zoom) with ``cv2.warpAffine``;
2. the object is evaluated analytically for all frames at once on its screen bounding box: each
   pixel is mapped back through the camera to object coordinates, where the shape gives an inside
   test (the mask), a surface normal (Lambert + specular shading) and surface coordinates
   (longitude, height) for the pattern, rotated by the turntable angle;
3. the style acts on the background and object layers separately and the layers are composited
   with the hard mask, so pixels outside the mask depend on the background only (a colour,
   material or product edit leaves them bit-identical).

Frames are uint8 ``(T, H, W, 3)`` RGB, masks bool ``(T, H, W)``. ``T`` is ``4k + 1`` and ``H``, ``W``
are multiples of 32, as Wan2.2 wants. Object geometry is in units of ``min(H, W)``, so a scene looks
the same at every size; the object stays at least 12% of that unit away from every border.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from flowstudio.errors import InputError

SHAPES: tuple[str, ...] = ("bottle", "box", "ball", "cup", "cone", "ring", "vase")
# sRGB albedo of each named colour; chosen far apart in CIELAB (min pairwise Delta E76 45.9, blue/purple).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (210, 35, 40),
    "orange": (245, 140, 30),
    "yellow": (245, 225, 40),
    "green": (50, 165, 75),
    "blue": (30, 110, 220),
    "purple": (140, 40, 150),
    "pink": (250, 150, 200),
    "white": (240, 240, 235),
}
MATERIALS: tuple[str, ...] = ("matte", "glossy", "striped", "dotted", "checkered")
BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "wood", "marble", "sky", "tiles")
MOTIONS: tuple[str, ...] = (
    "turntable",
    "pan_left",
    "pan_right",
    "zoom_in",
    "zoom_out",
    "turntable_pan_left",
    "turntable_pan_right",
    "turntable_zoom_in",
    "turntable_zoom_out",
)
STYLES: tuple[str, ...] = ("photo", "watercolor", "posterize", "pixel")
DEFAULT_FPS = 16.0

# Jitter ranges of the numeric fields (validated in SceneSpec and sampled by random_spec).
SIZE_RANGE = (0.40, 0.52)  # object height, fraction of min(H, W)
OFFSET_RANGE = (-0.04, 0.04)  # object centre offset, fraction of min(H, W)
STRETCH_RANGE = (0.9, 1.1)  # horizontal stretch of the object

_PAN = 0.16  # total camera travel of a pan, fraction of min(H, W)
_ZOOM = 1.25  # zoom factor at the close end of a zoom
_SPIN = 1.6  # turntable rotation over a clip, radians (about 90 degrees)
_ELEVATION = 0.22  # camera looks slightly down: screen y = Y + elevation * Z
_SECONDARY = 0.45  # pattern marks are the base colour times this
# Light direction (x right, y down, z toward the viewer) and the Blinn half vector, as plain floats so that
# float32 arrays stay float32 (numpy 2 promotes float32 * np.float64 to float64).
_LIGHT = tuple(float(v) for v in np.array([-0.45, -0.65, 0.62]) / np.linalg.norm([-0.45, -0.65, 0.62]))
_HALF = tuple(float(v) for v in (np.array(_LIGHT) + [0, 0, 1]) / np.linalg.norm(np.array(_LIGHT) + [0, 0, 1]))
_POSTERIZE_LEVELS = 6
_WATERCOLOR_LEVELS = 12
_WATERCOLOR_SIGMA = 1.6  # blur of the watercolour style, pixels at a 128 unit
_PIXEL_LEVELS = 16


@dataclass(frozen=True)
class SceneSpec:
    """Everything that defines a ShapeWorld clip.

    Attributes:
        shape: one of :data:`SHAPES`.
        color: one of :data:`COLORS` (albedo of the object).
        material: one of :data:`MATERIALS`: ``matte`` (Lambert), ``glossy`` (specular highlight and a
            reflection streak that moves with the turntable), ``striped``, ``dotted``, ``checkered``
            (marks in a darker shade of the same colour).
        background: one of :data:`BACKGROUNDS`; its texture comes from ``seed``.
        motion: one of :data:`MOTIONS`; camera pans move the whole scene sideways, zooms scale it
            about the frame centre, the turntable rotates the object about its vertical axis.
        style: one of :data:`STYLES`.
        size: object height as a fraction of ``min(height, width)``, in :data:`SIZE_RANGE`.
        offset_x, offset_y: object centre offset from the frame centre, same unit, in
            :data:`OFFSET_RANGE`.
        stretch: horizontal stretch of the object, in :data:`STRETCH_RANGE`.
        angle: turntable angle at the first frame, radians.
        seed: seed of the procedural textures (background, paper grain, palette choices).
    """

    shape: str = "bottle"
    color: str = "red"
    material: str = "matte"
    background: str = "plain"
    motion: str = "turntable"
    style: str = "photo"
    size: float = 0.48
    offset_x: float = 0.0
    offset_y: float = 0.0
    stretch: float = 1.0
    angle: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (
            ("shape", SHAPES),
            ("color", tuple(COLORS)),
            ("material", MATERIALS),
            ("background", BACKGROUNDS),
            ("motion", MOTIONS),
            ("style", STYLES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise InputError(f"SceneSpec.{name} must be one of {', '.join(allowed)}; got {value!r}")
        for name, (low, high) in (
            ("size", SIZE_RANGE),
            ("offset_x", OFFSET_RANGE),
            ("offset_y", OFFSET_RANGE),
            ("stretch", STRETCH_RANGE),
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not low - 1e-9 <= value <= high + 1e-9
            ):
                raise InputError(f"SceneSpec.{name} must be a number in [{low}, {high}]; got {value!r}")
        if (
            isinstance(self.angle, bool)
            or not isinstance(self.angle, int | float)
            or not math.isfinite(self.angle)
        ):
            raise InputError(f"SceneSpec.angle must be a finite number of radians; got {self.angle!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise InputError(f"SceneSpec.seed must be an integer in [0, 2**63); got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneSpec:
        """Build a spec from :meth:`to_dict` output; unknown keys raise :class:`InputError`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise InputError(f"unknown SceneSpec fields {unknown}; known: {sorted(fields)}")
        return cls(**data)


def random_spec(rng: np.random.Generator) -> SceneSpec:
    """A spec with every attribute drawn uniformly (categorical) or in its jitter range (numeric)."""

    def pick(options: tuple[str, ...] | list[str]) -> str:
        return options[int(rng.integers(len(options)))]

    return SceneSpec(
        shape=pick(SHAPES),
        color=pick(list(COLORS)),
        material=pick(MATERIALS),
        background=pick(BACKGROUNDS),
        motion=pick(MOTIONS),
        style=pick(STYLES),
        size=round(float(rng.uniform(*SIZE_RANGE)), 4),
        offset_x=round(float(rng.uniform(*OFFSET_RANGE)), 4),
        offset_y=round(float(rng.uniform(*OFFSET_RANGE)), 4),
        stretch=round(float(rng.uniform(*STRETCH_RANGE)), 4),
        angle=round(float(rng.uniform(0.0, 2 * math.pi)), 4),
        seed=int(rng.integers(2**31)),
    )


@dataclass(frozen=True)
class SceneRender:
    """Output of :func:`render_scene`.

    Attributes:
        frames: uint8 ``(T, H, W, 3)`` RGB.
        mask: bool ``(T, H, W)``, True where the object is (after the style: the ``pixel`` style
            snaps it to its blocks).
        background: uint8 ``(T, H, W, 3)`` the same clip without the object, or ``None`` when not
            asked for. ``frames[~mask] == background[~mask]`` exactly.
    """

    frames: np.ndarray
    mask: np.ndarray
    background: np.ndarray | None = None


def check_clip_size(num_frames: int, height: int, width: int) -> None:
    """Raise :class:`InputError` unless ``num_frames`` is ``4k + 1`` and both sides are multiples of 32."""
    if (
        isinstance(num_frames, bool)
        or not isinstance(num_frames, int | np.integer)
        or num_frames < 1
        or num_frames % 4 != 1
    ):
        raise InputError(f"num_frames must be 4k+1 (1, 5, 9, 13, 17, ...), got {num_frames!r}")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 32 or value % 32:
            raise InputError(
                f"{name} must be a positive multiple of 32 (32, 64, 96, 128, ...), got {value!r}"
            )


def render_clip(spec: SceneSpec, num_frames: int = 17, height: int = 128, width: int = 128) -> np.ndarray:
    """Render ``spec`` to uint8 frames ``(num_frames, height, width, 3)``.

    Raises:
        InputError: ``num_frames`` is not ``4k + 1`` or a side is not a multiple of 32.
    """
    return render_scene(spec, num_frames, height, width).frames


def render_mask(spec: SceneSpec, num_frames: int = 17, height: int = 128, width: int = 128) -> np.ndarray:
    """Exact per-frame object masks, bool ``(num_frames, height, width)``, from the same geometry."""
    return render_scene(spec, num_frames, height, width).mask


def render_scene(
    spec: SceneSpec,
    num_frames: int = 17,
    height: int = 128,
    width: int = 128,
    *,
    with_background: bool = False,
) -> SceneRender:
    """Render frames and masks together (and the object-free background when asked).

    Args:
        spec: the scene.
        num_frames: ``4k + 1``.
        height, width: multiples of 32.
        with_background: also return the clip without the object.
    """
    if not isinstance(spec, SceneSpec):
        raise InputError(f"spec must be a SceneSpec, got {type(spec).__name__}")
    check_clip_size(num_frames, height, width)
    camera = _Camera.of(spec, int(num_frames), int(height), int(width))
    paper = _paper_texture(spec.seed, camera.height, camera.width) if spec.style == "watercolor" else None
    background = _stylize_background(_render_background(spec, camera), spec.style, camera.unit, paper)
    crop, mask, (y0, y1, x0, x1) = _render_object(spec, camera, paper)
    frames = background.copy() if with_background else background
    region = frames[:, y0:y1, x0:x1]
    for channel in range(3):
        np.copyto(region[..., channel], crop[..., channel], where=mask)
    full_mask = np.zeros((camera.num_frames, camera.height, camera.width), dtype=bool)
    full_mask[:, y0:y1, x0:x1] = mask
    return SceneRender(frames=frames, mask=full_mask, background=background if with_background else None)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Camera


@dataclass(frozen=True)
class _Camera:
    """Per-frame camera: screen = centre + zoom * (world - centre - pan); turntable angle per frame."""

    num_frames: int
    height: int
    width: int
    unit: float
    zoom: np.ndarray  # (T,)
    pan: np.ndarray  # (T,) world x offset of the camera, pixels
    theta: np.ndarray  # (T,) turntable angle, radians

    @classmethod
    def of(cls, spec: SceneSpec, num_frames: int, height: int, width: int) -> _Camera:
        unit = float(min(height, width))
        t = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
        motion = spec.motion
        zoom = np.ones(num_frames)
        if motion.endswith("zoom_in"):
            zoom = 1.0 + (_ZOOM - 1.0) * t
        elif motion.endswith("zoom_out"):
            zoom = _ZOOM - (_ZOOM - 1.0) * t
        pan = np.zeros(num_frames)
        if motion.endswith("pan_left"):  # the camera moves left: the scene drifts right
            pan = -_PAN * unit * (t - 0.5)
        elif motion.endswith("pan_right"):
            pan = _PAN * unit * (t - 0.5)
        spin = _SPIN if motion.startswith("turntable") else 0.0
        theta = spec.angle + spin * t
        return cls(num_frames, height, width, unit, zoom, pan, theta)

    @property
    def center(self) -> tuple[float, float]:
        return (self.width - 1) / 2.0, (self.height - 1) / 2.0


# --------------------------------------------------------------------------------------------
# Backgrounds: a canvas wider than the frame (room for the pan), warped per frame


def _texture_rng(seed: int, salt: str) -> np.random.Generator:
    return np.random.default_rng([seed, sum(ord(c) * 131**i for i, c in enumerate(salt)) % 2**32])


def _noise(
    rng: np.random.Generator,
    height: int,
    width: int,
    cells: float,
    unit: float,
    octaves: int = 3,
    aniso: float = 1.0,
) -> np.ndarray:
    """Fractal value noise in [0, 1], ``cells`` cells per unit at the first octave, cubic upsampling."""
    total = np.zeros((height, width), np.float32)
    norm = 0.0
    for octave in range(octaves):
        c = cells * 2**octave
        gh = max(2, int(math.ceil(height / unit * c)) + 2)
        gw = max(2, int(math.ceil(width / unit * c / aniso)) + 2)
        grid = rng.random((gh, gw)).astype(np.float32)
        total += cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC) * 0.5**octave
        norm += 0.5**octave
    total /= norm
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / max(hi - lo, 1e-6)


def _mix(a: np.ndarray | tuple, b: np.ndarray | tuple, w: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32) / 255.0
    b = np.asarray(b, np.float32) / 255.0
    return a + (b - a) * w[..., None]


_PLAIN = (
    (200, 200, 200),
    (225, 215, 195),
    (170, 180, 190),
    (120, 125, 130),
    (210, 200, 215),
    (190, 205, 195),
    (90, 90, 95),
    (230, 225, 220),
)
_GRADIENTS = (
    ((235, 225, 210), (150, 140, 130)),
    ((220, 200, 215), (120, 110, 140)),
    ((200, 215, 200), (90, 110, 100)),
    ((240, 240, 240), (110, 110, 115)),
    ((235, 210, 190), (140, 100, 90)),
    ((215, 215, 190), (100, 100, 80)),
)
_WOODS = (((170, 115, 70), (120, 75, 40)), ((140, 90, 55), (90, 55, 30)), ((190, 140, 95), (140, 95, 55)))
_MARBLES = (
    ((235, 235, 230), (120, 120, 125)),
    ((230, 225, 215), (140, 125, 110)),
    ((220, 225, 225), (95, 105, 110)),
)
_TILES = (
    ((225, 225, 220), (70, 75, 85)),
    ((200, 190, 170), (110, 95, 80)),
    ((180, 200, 205), (60, 80, 90)),
    ((230, 215, 200), (150, 70, 60)),
)


def _background_canvas(kind: str, seed: int, height: int, width: int, unit: float) -> np.ndarray:
    """Float32 ``(height, width, 3)`` texture in [0, 1], a pure function of its arguments."""
    rng = _texture_rng(seed, kind)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) / unit
    if kind == "plain":
        color = np.asarray(_PLAIN[int(rng.integers(len(_PLAIN)))], np.float32) / 255.0
        return np.broadcast_to(color, (height, width, 3)).copy()
    if kind == "gradient":
        a, b = _GRADIENTS[int(rng.integers(len(_GRADIENTS)))]
        if rng.random() < 0.5:
            a, b = b, a
        angle = rng.uniform(0, 2 * math.pi)
        proj = np.cos(angle) * xx + np.sin(angle) * yy
        w = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1e-6)
        return _mix(a, b, w)
    if kind == "wood":
        light, dark = _WOODS[int(rng.integers(len(_WOODS)))]
        plank = 0.22 + 0.06 * rng.random()
        phase = rng.random()
        row = np.floor(yy / plank + phase)
        tint = 0.9 + 0.2 * _hash01(row, seed)
        warp = _noise(rng, height, width, 1.5, unit, octaves=2, aniso=6.0)
        grain = 0.5 + 0.5 * np.sin(2 * np.pi * (yy * 22.0 + 3.0 * warp + row * 0.37))
        fine = _noise(rng, height, width, 10.0, unit, octaves=1, aniso=8.0)
        w = np.clip(0.65 * grain**2 + 0.35 * fine, 0, 1)
        image = _mix(light, dark, w) * tint[..., None]
        seam = np.abs((yy / plank + phase) - np.round(yy / plank + phase)) * plank * unit < 0.6
        image[seam] *= 0.55
        return image
    if kind == "marble":
        base, vein = _MARBLES[int(rng.integers(len(_MARBLES)))]
        angle = rng.uniform(0, math.pi)
        turb = _noise(rng, height, width, 1.5, unit, octaves=4)
        proj = np.cos(angle) * xx + np.sin(angle) * yy
        v = np.abs(np.sin(np.pi * (proj * 1.6 + 1.1 * turb)))
        turb2 = _noise(rng, height, width, 3.0, unit, octaves=3)
        v2 = np.abs(np.sin(np.pi * (proj * 3.1 + 1.5 * turb2 + 0.3)))
        w = np.clip(np.maximum(np.exp(-((v / 0.09) ** 2)), 0.5 * np.exp(-((v2 / 0.06) ** 2))), 0, 1) * 0.85
        cloud = _noise(rng, height, width, 2.0, unit, octaves=3)
        return _mix(base, vein, w) * (0.93 + 0.07 * cloud[..., None])
    if kind == "sky":
        top = np.asarray((60, 120, 205), np.float32) / 255.0
        bottom = np.asarray((165, 205, 240), np.float32) / 255.0
        w = np.clip(yy * unit / max(height - 1, 1), 0, 1)
        sky = top + (bottom - top) * w[..., None]
        clouds = _noise(rng, height, width, 2.5, unit, octaves=4, aniso=2.0)
        cover = np.clip((clouds - 0.45) * 3.5, 0, 1) ** 1.2
        return sky + (np.float32(0.97) - sky) * cover[..., None]
    if kind == "tiles":
        a, b = _TILES[int(rng.integers(len(_TILES)))]
        tile = 0.16 + 0.05 * rng.random()
        ox, oy = rng.random(2)
        gx, gy = xx / tile + ox, yy / tile + oy
        checker = (np.floor(gx) + np.floor(gy)) % 2
        image = _mix(a, b, checker.astype(np.float32))
        jitter = 0.92 + 0.16 * _hash01(np.floor(gx) * 7 + np.floor(gy) * 13, seed)
        image *= jitter[..., None]
        grout = (np.minimum(np.abs(gx - np.round(gx)), np.abs(gy - np.round(gy))) * tile * unit) < 0.8
        image[grout] = np.asarray((200, 200, 195), np.float32) / 255.0
        return image
    raise AssertionError(kind)


def _hash01(values: np.ndarray, seed: int) -> np.ndarray:
    """A pseudo-random number in [0, 1) per integer-valued float: an integer hash, exact on every machine."""
    h = values.astype(np.int64).astype(np.uint64)
    h = (h * np.uint64(0x9E3779B1) + np.uint64(seed % 2**32)) & _MASK32
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x2C1B3C6D)) & _MASK32
    h ^= h >> np.uint64(12)
    h = (h * np.uint64(0x297A2D39)) & _MASK32
    h ^= h >> np.uint64(15)
    return (h.astype(np.float64) / 2**32).astype(np.float32)


_MASK32 = np.uint64(0xFFFFFFFF)


def _render_background(spec: SceneSpec, camera: _Camera) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` background: the canvas warped by each frame's camera."""
    margin = int(math.ceil(_PAN * camera.unit / 2)) + 2
    canvas = _to_uint8(
        _background_canvas(spec.background, spec.seed, camera.height, camera.width + 2 * margin, camera.unit)
    )
    cx, cy = camera.center
    out = np.empty((camera.num_frames, camera.height, camera.width, 3), np.uint8)
    for i in range(camera.num_frames):
        z, pan = float(camera.zoom[i]), float(camera.pan[i])
        if z == 1.0 and pan == 0.0:
            out[i] = canvas[:, margin : margin + camera.width]
            continue
        # canvas coordinate of a screen pixel: (p - c) / z + c + pan (+ margin in x)
        matrix = np.array([[1 / z, 0, cx - cx / z + pan + margin], [0, 1 / z, cy - cy / z]])
        out[i] = cv2.warpAffine(
            canvas,
            matrix,
            (camera.width, camera.height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
    return out


# --------------------------------------------------------------------------------------------
# Objects: analytic fields on the screen box, all frames at once

# Profiles r(Y) of the solids of revolution, Y from 0 (top) to 1 (bottom), in units of the height.
_PROFILES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "bottle": (
        (0.0, 0.09, 0.1, 0.28, 0.33, 0.38, 0.43, 0.47, 1.0),
        (0.075, 0.075, 0.062, 0.062, 0.10, 0.155, 0.19, 0.2, 0.2),
    ),
    "vase": (
        (0.0, 0.05, 0.12, 0.22, 0.32, 0.45, 0.58, 0.72, 0.86, 1.0),
        (0.2, 0.17, 0.12, 0.105, 0.16, 0.26, 0.29, 0.26, 0.2, 0.15),
    ),
    "cup": ((0.0, 1.0), (0.36, 0.28)),
    "cone": ((0.0, 1.0), (0.0, 0.38)),
}
# Largest half width of each shape over a turn, in height units (before ``stretch``).
_HALF_WIDTH = {
    "bottle": 0.21,
    "vase": 0.305,
    "cone": 0.4,
    "cup": 0.56,
    "ball": 0.525,
    "ring": 0.5,
    "box": 0.455,
}
# Wide shapes are drawn smaller so that every shape keeps its margin: half width <= 0.5 height at max stretch.
_SHAPE_SCALE = {name: min(1.0, 0.5 / (hw * STRETCH_RANGE[1])) for name, hw in _HALF_WIDTH.items()}


@dataclass
class _Part:
    """Fields of one visible part of a shape, each broadcastable to ``(T, h, w)``.

    ``coords`` lazily gives the surface coordinates ``(u, v, alpha)``: ``u`` around the object and ``v``
    along it (height units, the turntable angle included, for the pattern) and ``alpha``, the angle of the
    surface from the viewer (for the glossy streak). ``None``: no pattern and no streak on this part.
    """

    inside: np.ndarray
    normal: tuple[np.ndarray, np.ndarray, np.ndarray]
    coords: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
    tone: np.ndarray | float = 1.0


def _render_object(
    spec: SceneSpec, camera: _Camera, paper: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Styled object pixels uint8 ``(T, h, w, 3)`` and mask ``(T, h, w)`` on the box ``(y0, y1, x0, x1)``.

    Only the pixels under the mask are meaningful in the returned crop.
    """
    unit, (cx, cy) = camera.unit, camera.center
    hgt = spec.size * unit * _SHAPE_SCALE[spec.shape]
    wid = hgt * spec.stretch
    ox, oy = cx + spec.offset_x * unit, cy + spec.offset_y * unit
    ex, ey = (_HALF_WIDTH[spec.shape] + 0.02) * wid, 0.53 * hgt
    z = camera.zoom
    # Screen box covering every frame (zoom about the centre, pan sideways), on the pixel-style grid.
    step = _pixel_block(unit) if spec.style == "pixel" else 1
    x0 = int(math.floor((cx + z * (ox - ex - cx - camera.pan)).min()))
    x1 = int(math.ceil((cx + z * (ox + ex - cx - camera.pan)).max())) + 1
    y0 = int(math.floor((cy + z * (oy - ey - cy)).min()))
    y1 = int(math.ceil((cy + z * (oy + ey - cy)).max())) + 1
    x0, y0 = max(0, x0 // step * step), max(0, y0 // step * step)
    x1, y1 = min(camera.width, -(-x1 // step) * step), min(camera.height, -(-y1 // step) * step)
    zz = z[:, None, None]
    xs = np.arange(x0, x1, dtype=np.float64)[None, None, :]
    ys = np.arange(y0, y1, dtype=np.float64)[None, :, None]
    # Object coordinates in height units: X right from the axis, Y down from the top (0..1).
    X = (((xs - cx) / zz + cx + camera.pan[:, None, None] - ox) / wid).astype(np.float32)  # (T, 1, w)
    Y = (((ys - cy) / zz + cy - oy) / hgt + 0.5).astype(np.float32)  # (T, h, 1)
    theta = camera.theta.astype(np.float32)[:, None, None]
    shape = (camera.num_frames, y1 - y0, x1 - x0)
    intensity = np.zeros(shape, np.float32)
    white = np.zeros(shape, np.float32) if spec.material == "glossy" else None
    mask = np.zeros(shape, bool)
    for part in _SHAPE_PARTS[spec.shape](X, Y, theta):  # painter's order: later parts cover earlier ones
        inside = np.broadcast_to(part.inside, shape)
        part_intensity, part_white = _shade(part, spec.material, theta)
        np.copyto(intensity, np.broadcast_to(part_intensity, shape), where=inside)
        if white is not None:
            np.copyto(white, np.broadcast_to(part_white, shape), where=inside)
        mask |= inside
    layer = intensity[..., None] * (np.asarray(COLORS[spec.color], np.float32) / 255.0)
    if white is not None:
        layer += (1.0 - layer) * white[..., None]
    crop = _stylize_object(
        layer, mask, spec.style, unit, None if paper is None else np.ascontiguousarray(paper[y0:y1, x0:x1])
    )
    if spec.style == "pixel":  # the object takes the blocks it covers at least half of
        mask = _block_mask(mask, step)
    return crop, mask, (y0, y1, x0, x1)


def _shade(part: _Part, material: str, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray | float]:
    """Intensity (albedo scale) and white mix of one part: ambient + Lambert, pattern marks, specular."""
    nx, ny, nz = part.normal
    intensity = (0.32 + 0.68 * np.maximum(nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2], 0.0)) * part.tone
    coords = part.coords() if part.coords is not None and material != "matte" else None
    if coords is not None and material in ("striped", "dotted", "checkered"):
        intensity = intensity * (1.0 - (1.0 - _SECONDARY) * _pattern(material, coords[0], coords[1]))
    if material != "glossy":
        return intensity.astype(np.float32), 0.0
    h = np.clip(nx * _HALF[0] + ny * _HALF[1] + nz * _HALF[2], 0.0, 1.0)
    h8 = (h * h) ** 4
    white = h8**5 * 0.85  # Blinn-Phong, exponent 40
    if coords is not None:  # a reflected softbox: a vertical streak that sways as the object turns
        offset = (coords[2] - (-0.45 + 0.3 * np.sin(2 * theta))) / 0.2
        white = white + 0.35 * np.maximum(1.0 - offset * offset, 0.0) ** 2 * np.maximum(nz, 0.0)
    return intensity.astype(np.float32), np.minimum(white, 1.0).astype(np.float32)


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _pattern(material: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1.0 where the pattern's darker marks are, else 0.0, from surface coordinates in height units."""
    if material == "striped":
        marks = _frac(u * (1 / 0.16)) < 0.5
    elif material == "checkered":
        marks = _frac((np.floor(u * (1 / 0.13)) + np.floor(v * (1 / 0.13))) * 0.5) > 0.25
    else:
        du = _frac(u * (1 / 0.14)) - 0.5
        dv = _frac(v * (1 / 0.14)) - 0.5
        marks = du * du + dv * dv < 0.3**2
    return marks.astype(np.float32)


def _asin(x: np.ndarray) -> np.ndarray:
    """arcsin on [-1, 1] to 7e-5 rad (Abramowitz & Stegun 4.4.45); numpy's float32 arcsin is slow."""
    a = np.abs(x)
    poly = ((-0.0187293 * a + 0.0742610) * a - 0.2121144) * a + 1.5707288
    r = np.float32(np.pi / 2) - np.sqrt(np.maximum(1.0 - a, 0.0)) * poly
    return np.copysign(r, x).astype(np.float32)


def _atan2(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """atan2 to 1e-5 rad by a minimax polynomial on [0, 1] and octant folding."""
    ax, ay = np.abs(x), np.abs(y)
    a = np.minimum(ax, ay) / np.maximum(np.maximum(ax, ay), 1e-12)
    s = a * a
    r = ((-0.0464964749 * s + 0.15931422) * s - 0.327622764) * s * a + a
    r = np.where(ay > ax, np.float32(np.pi / 2) - r, r)
    r = np.where(x < 0, np.float32(np.pi) - r, r)
    return np.copysign(r, y).astype(np.float32)


def _wobble(theta: np.ndarray) -> np.ndarray:
    """Width modulation of the round shapes over a turn: a slightly elliptical cross-section."""
    return 1.0 + 0.05 * np.cos(2 * theta)


def _lathe(
    X: np.ndarray,
    Y: np.ndarray,
    theta: np.ndarray,
    profile: tuple[tuple[float, ...], tuple[float, ...]],
    *,
    y_top: float = 0.0,
) -> _Part:
    """Side surface of a solid of revolution of radius ``profile`` r(Y), base ellipse seen from above."""
    ys, rs = profile
    wobble = _wobble(theta)
    yc = np.clip(Y, 0.0, 1.0)
    r = (np.interp(yc.ravel(), ys, rs).reshape(yc.shape) * wobble).astype(np.float32)  # (T, h, 1)
    slope = np.interp(yc.ravel(), ys, np.gradient(np.asarray(rs, float), np.asarray(ys, float)))
    r_bottom = rs[-1] * wobble
    u = X / np.maximum(r, 1e-4)
    ub = np.clip(X / r_bottom, -1.0, 1.0)
    bottom = 1.0 - _ELEVATION * r_bottom * (1.0 - np.sqrt(1.0 - ub * ub))  # (T, 1, w)
    inside = (np.abs(u) < 1.0) & (y_top <= Y) & (bottom >= Y)
    ny = (-0.8 * slope).reshape(yc.shape).astype(np.float32)
    inv = 1.0 / np.sqrt(1.0 + ny * ny)  # |(u, ny, sqrt(1 - u^2))| = sqrt(1 + ny^2)
    depth = np.sqrt(np.maximum(1.0 - u * u, 0.0))
    mean_r = float(np.mean(rs))

    def coords() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        alpha = _asin(np.clip(u, -1.0, 1.0))
        return (alpha + theta) * mean_r, Y, alpha

    return _Part(inside, (u * inv, ny * inv, depth * inv), coords)


def _rim(X: np.ndarray, Y: np.ndarray, theta: np.ndarray, radius: float, thickness: float) -> list[_Part]:
    """Open top of a vessel seen from above: the lip ellipse and the darker inside."""
    r = radius * _wobble(theta)
    e = _ELEVATION * r
    d_out = (X / r) ** 2 + ((Y - e) / e) ** 2
    d_in = d_out * (1.0 / thickness**2)
    lip = _Part(d_out <= 1.0, _unit((0.0, -1.0, 0.4)), tone=0.95)
    hole = _Part(d_in <= 1.0, _unit((0.0, 0.3, 1.0)), tone=(0.35 + 0.125 * (Y - e + e) / e))
    return [lip, hole]


def _unit(vector: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.asarray(vector, np.float32) / np.linalg.norm(vector)
    return v[0], v[1], v[2]


def _bottle(X: np.ndarray, Y: np.ndarray, theta: np.ndarray) -> list[_Part]:
    body = _lathe(X, Y, theta, _PROFILES["bottle"])
    body.tone = np.where(Y < 0.095, 0.7, 1.0).astype(np.float32)  # a darker cap
    return [body]


def _vase(X: np.ndarray, Y: np.ndarray, theta: np.ndarray) -> list[_Part]:
    return [_lathe(X, Y, theta, _PROFILES["vase"], y_top=_ELEVATION * 0.2), *_rim(X, Y, theta, 0.2, 0.8)]


def _cone(X: np.ndarray, Y: np.ndarray, theta: np.ndarray) -> list[_Part]:
    return [_lathe(X, Y, theta, _PROFILES["cone"])]


def _cup(X: np.ndarray, Y: np.ndarray, theta: np.ndarray) -> list[_Part]:
    body = _lathe(X, Y, theta, _PROFILES["cup"], y_top=_ELEVATION * 0.36)
    # Handle: half a torus in the plane through the axis at angle theta, seen edge-on when it faces us.
    s, c = np.sin(theta), np.cos(theta)
    sx = np.maximum(np.abs(s), 0.22)
    dx = (X - 0.33 * s) / sx
    dy = Y - 0.48
    rho = np.sqrt(dx * dx + dy * dy)
    tube = (rho - 0.17) * (1 / 0.055)
    loop = (np.abs(tube) < 1.0) & (dx * np.where(s >= 0, 1.0, -1.0) > -0.02)
    inv_rho = 1.0 / (rho + 1e-6)
    normal = (tube * dx * inv_rho, tube * dy * inv_rho, np.sqrt(np.maximum(1.0 - tube * tube, 0.0)))

    def coords() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return X + 0.0 * Y, Y + 0.0 * X, _asin(np.clip(normal[0], -1.0, 1.0))

    behind = c < 0  # behind the cup: drawn first, the body covers it
    back = _Part(loop & behind, normal, coords)
    front = _Part(loop & ~behind, normal, coords)
    return [back, body, *_rim(X, Y, theta, 0.36, 0.86), front]


def _ball(X: np.ndarray, Y: np.ndarray, theta: np.ndarray) -> list[_Part]:
    px, py = X / (0.5 * _wobble(theta)), (Y - 0.5) * 2.0
    d2 = px * px + py * py
    nz = np.sqrt(np.maximum(1.0 - d2, 0.0))

    def coords() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        alpha = _asin(np.clip(px / np.sqrt(np.maximum(1.0 - py * py, 1e-6)), -1.0, 1.0))
        return (alpha + theta) * 0.45, _asin(np.clip(py, -1.0, 1.0)) * 0.5, alpha

    return [_Part(d2 < 1.0, (px, py, nz), coords)]


def _ring(X: np.ndarray, Y: np.ndarray, theta: np.ndarray) -> list[_Part]:
    """A torus facing the camera; the turn shows as a horizontal squash and moving pattern."""
    px, py = X / (0.8 + 0.2 * np.cos(2 * theta)), Y - 0.5
    rho = np.sqrt(px * px + py * py)
    tube = (rho - 0.35) * (1 / 0.14)
    inv_rho = 1.0 / (rho + 1e-6)
    normal = (tube * px * inv_rho, tube * py * inv_rho, np.sqrt(np.maximum(1.0 - tube * tube, 0.0)))

    def coords() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (_atan2(py, px) + theta) * 0.35, tube * 0.14, _asin(np.clip(normal[0], -1.0, 1.0))

    return [_Part(np.abs(tube) < 1.0, normal, coords)]


def _box(X: np.ndarray, Y: np.ndarray, theta: np.ndarray) -> list[_Part]:
    """A square-section box turning about its vertical axis, seen from slightly above.

    Per screen column the front surface (largest depth) is one side face and the back surface bounds
    the visible top face; both are found on ``(T, 1, w)`` columns.
    """
    half_diag = 0.32 * math.sqrt(2.0)
    e = _ELEVATION
    top, bottom = e * half_diag, 1.0 - e * half_diag
    angles = [theta + (k * 0.5 + 0.25) * np.pi for k in range(4)]
    cx = [half_diag * np.sin(a) for a in angles]
    cz = [half_diag * np.cos(a) for a in angles]
    column = np.broadcast_shapes(X.shape, theta.shape)
    z_front = np.full(column, -np.inf, np.float32)
    z_back = np.full(column, np.inf, np.float32)
    face = np.zeros(column, np.float32)
    along = np.zeros(column, np.float32)
    for k in range(4):  # edge k of the square runs from corner k to corner k + 1
        xa, za, xb, zb = cx[k], cz[k], cx[(k + 1) % 4], cz[(k + 1) % 4]
        span = np.where(np.abs(xb - xa) < 1e-6, 1e-6, xb - xa)
        t = np.clip((X - xa) / span, 0.0, 1.0)
        on = (np.minimum(xa, xb) <= X) & (np.maximum(xa, xb) >= X)
        zk = za + t * (zb - za)
        front = on & (zk > z_front)
        z_front = np.where(front, zk, z_front)
        face = np.where(front, k, face)
        along = np.where(front, t, along)
        z_back = np.where(on & (zk < z_back), zk, z_back)
    seen = np.isfinite(z_front)
    z_front = np.where(seen, z_front, 0.0)
    z_back = np.where(seen, z_back, 0.0)
    normal_angle = theta + (face * 0.5 + 0.5) * np.pi
    nx, nz = np.sin(normal_angle), np.cos(normal_angle)

    def coords() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        alpha = np.arctan2(nx, nz)  # per column: cheap
        return (face + along) * 0.64, Y - e * z_front, alpha

    side = _Part(seen & (top + e * z_front <= Y) & (bottom + e * z_front >= Y), (nx, 0.0 * nx, nz), coords)
    lid = _Part(seen & (top + e * z_back <= Y) & (top + e * z_front > Y), _unit((0.0, -1.0, 0.35)))
    return [side, lid]


_SHAPE_PARTS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], list[_Part]]] = {
    "bottle": _bottle,
    "box": _box,
    "ball": _ball,
    "cup": _cup,
    "cone": _cone,
    "ring": _ring,
    "vase": _vase,
}


# --------------------------------------------------------------------------------------------
# Styles: applied to the background and the object layer separately (composited by the mask)


def _pixel_block(unit: float) -> int:
    """Block size of the pixel style: a power of two (so it divides any multiple of 32), >= 2."""
    return int(2 ** max(1, min(5, int(math.log2(max(2.0, unit / 32))))))


def _block_mask(mask: np.ndarray, block: int) -> np.ndarray:
    t, h, w = mask.shape
    cover = mask.reshape(t, h // block, block, w // block, block).mean(axis=(2, 4))
    return np.repeat(np.repeat(cover >= 0.5, block, axis=1), block, axis=2)


def _paper_texture(seed: int, height: int, width: int) -> np.ndarray:
    rng = _texture_rng(seed, "paper")
    unit = float(min(height, width))
    grain = _noise(rng, height, width, 24.0, unit, octaves=2)
    fibres = _noise(rng, height, width, 5.0, unit, octaves=2)
    paper = _to_uint8(0.9 + 0.07 * grain + 0.03 * fibres)
    return np.repeat(paper[..., None], 3, axis=2)


def _quantize(x: np.ndarray, levels: int) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * (levels - 1)) / (levels - 1)


def _level_lut(levels: int) -> np.ndarray:
    return _to_uint8(_quantize(np.arange(256, dtype=np.float32) / 255.0, levels))


def _stylize_background(frames: np.ndarray, style: str, unit: float, paper: np.ndarray | None) -> np.ndarray:
    """Apply ``style`` to uint8 background frames ``(T, H, W, 3)``."""
    if style == "photo":
        return frames
    if style == "posterize":
        return cv2.LUT(frames, _level_lut(_POSTERIZE_LEVELS))
    out = np.empty_like(frames)
    t, h, w, _ = frames.shape
    if style == "pixel":
        block = _pixel_block(unit)
        lut = _level_lut(_PIXEL_LEVELS)
        for i in range(t):  # INTER_AREA at an integer factor is the block mean
            small = cv2.LUT(
                cv2.resize(frames[i], (w // block, h // block), interpolation=cv2.INTER_AREA), lut
            )
            out[i] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        return out
    if style == "watercolor":
        sigma = _WATERCOLOR_SIGMA * unit / 128
        for i in range(t):
            out[i] = cv2.GaussianBlur(frames[i], (0, 0), sigma)
        return _wash(out, paper)
    raise AssertionError(style)


def _stylize_object(
    layer: np.ndarray, mask: np.ndarray, style: str, unit: float, paper: np.ndarray | None
) -> np.ndarray:
    """Apply ``style`` to the float object layer ``(T, h, w, 3)``; only masked pixels feed the result."""
    if style == "photo":
        return _to_uint8(layer)
    if style == "posterize":
        return _to_uint8(_quantize(layer, _POSTERIZE_LEVELS))
    if style == "pixel":  # average the object's own pixels in each block
        block = _pixel_block(unit)
        t, h, w, _ = layer.shape
        m = mask.reshape(t, h // block, block, w // block, block, 1).astype(np.float32)
        sums = (layer.reshape(t, h // block, block, w // block, block, 3) * m).sum(axis=(2, 4))
        blocks = _quantize(sums / np.maximum(m.sum(axis=(2, 4)), 1e-6), _PIXEL_LEVELS)
        return _to_uint8(np.repeat(np.repeat(blocks, block, axis=1), block, axis=2))
    if style == "watercolor":
        sigma = _WATERCOLOR_SIGMA * unit / 128
        out = np.empty_like(layer)
        for i in range(layer.shape[0]):
            # normalised convolution: blur the object without pulling in the empty surround
            m = mask[i].astype(np.float32)
            num = cv2.GaussianBlur(layer[i] * m[..., None], (0, 0), sigma)
            den = cv2.GaussianBlur(m, (0, 0), sigma)
            edge = np.clip((1.0 - den) * 2.0, 0.0, 1.0) * m  # pigment pools at the edge of the wash
            out[i] = num / np.maximum(den, 1e-3)[..., None] * (1.0 - 0.25 * edge)[..., None]
        return _wash(_to_uint8(out), paper)
    raise AssertionError(style)


def _wash(frames: np.ndarray, paper: np.ndarray | None) -> np.ndarray:
    """Watercolour tones of uint8 frames: few levels, lightened toward the paper, times the paper grain."""
    levels = _quantize(np.arange(256, dtype=np.float32) / 255.0, _WATERCOLOR_LEVELS)
    out = cv2.LUT(frames, _to_uint8(0.85 * levels + 0.15))
    if paper is not None:
        for i in range(out.shape[0]):
            out[i] = cv2.multiply(out[i], paper, scale=1 / 255)
    return out
