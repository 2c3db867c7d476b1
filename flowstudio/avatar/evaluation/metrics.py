"""Offline talking-head metrics on the TalkingShapes toy world: lip-sync, structure, identity, flicker.

Pure functions of numpy arrays (frames uint8 ``(T, H, W, 3)``, waveforms float32 ``(N,)``, structure
latents float32 ``(T, 7 + 3K)`` in :func:`flowstudio.worlds.faces.structure_array`'s layout); the
drivers in :mod:`flowstudio.avatar.evaluation.evaluate` call them clip by clip. Definitions:

* **Lip-sync** (:func:`lip_sync`): the mouth opening read from the pixels
  (:func:`flowstudio.worlds.faces.read_mouth_opening`) against the audio loudness envelope
  (:func:`loudness_envelope`: RMS of the waveform in a ``1 / fps`` window centred on each frame
  time, taken in dB). Pearson correlation over *speech frames* only (audio frames whose loudness is
  at least ``speech_threshold`` times the clip's maximum), for every lag ``k`` in
  ``[-max_offset, max_offset]``: audio frame ``s`` is paired with mouth frame ``s + k``, so a positive
  lag means the mouth follows the sound. Reported: the correlation at the best lag
  (``lip_sync_corr``), the best lag (``lip_sync_offset``, frames), the correlation at lag 0
  (``lip_sync_corr_at_0``) and how much the best lag stands out, the best correlation minus the
  median over all lags (``lip_sync_conf``: the idea of SyncNet's confidence; the maximum over lags
  of a curve of noise is positive too, its prominence much less). The world's mouth follows its
  sound by one frame (:data:`~flowstudio.worlds.faces.MOUTH_LATENCY`), so ground truth peaks at
  ``+1``. A mouth that does not move has no correlation: it scores 0. The dB envelope and full-band
  RMS were chosen on held-out clips (seed 1000): ground truth 0.56 mean correlation against 0.23
  with another clip's audio, where linear RMS gave 0.49 / 0.25 and band-limited RMS no better.
* **Structure error** (:func:`structure_error`): mean absolute error of a generated structure latent
  against the ground truth of the same clip, per channel group: ``pose`` (yaw, pitch, roll; radians),
  ``translation_scale`` (tx, ty, tz, scale; head units) and ``keypoints`` (head units).
* **Pose plausibility** (:func:`pose_plausibility`): the fraction of frames whose yaw, pitch and roll
  are all within :data:`~flowstudio.worlds.faces.POSE_LIMITS`, and, against ground truth, the 1-D
  Wasserstein distance between the distributions of frame-to-frame angle changes (rad / frame),
  averaged over the three angles: a model whose head freezes or jitters moves unlike the world.
* **Identity** (:func:`identity_signature`, :func:`identity_distance`): the colour distribution of
  the head region in CIELAB, as a signature (Lab bins of :data:`IDENTITY_BIN` units: the weight of each
  bin and the mean colour of its pixels), compared by the Earth mover's distance with a Euclidean
  ground distance (OpenCV ``cv2.EMD``): the average Lab change (Delta E 1976) per pixel under the best
  matching of the two regions' pixels. The region is the box around where the world's camera puts the
  head at rest (:data:`IDENTITY_BOX`, in head units of :data:`~flowstudio.worlds.faces.HEAD_FRACTION`
  times ``min(H, W)``), so it holds skin, hair, eyes, mouth and the background around the head; it is
  specific to TalkingShapes framing, as ArcFace needs aligned face crops. Why: pose and expression move
  a few per cent of the pixels between colours (measured on 16 held-out identities over 12 s: 95th
  percentile within an identity at most 6.6), while another skin, hair colour or background moves a
  large share (median across identities 24; the closest pairs, about 6-10, share skin and background).
* **Identity drift** (:func:`identity_drift`): the distance between the reference image and the
  frames within ``window`` seconds of 10 s and 30 s (the last frames when the clip is shorter; the
  time used is reported).
* **Temporal**: warp error and flicker of :mod:`flowstudio.bench.metrics.temporal` (optical flow,
  8-bit levels), unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from flowstudio.bench.metrics.color import rgb_to_lab
from flowstudio.errors import InputError
from flowstudio.worlds.faces import (
    BASE_TRANSLATION,
    HEAD_FRACTION,
    POSE_CHANNELS,
    POSE_LIMITS,
    StructureLatent,
    read_mouth_opening,
    structure_array,
)

#: Channel groups of a structure latent frame ``[yaw, pitch, roll, tx, ty, tz, scale, k0x, ...]``.
STRUCTURE_GROUPS: dict[str, slice] = {
    "pose": slice(0, 3),
    "translation_scale": slice(3, POSE_CHANNELS),
    "keypoints": slice(POSE_CHANNELS, None),
}
ANGLES = ("yaw", "pitch", "roll")
#: Identity region ``(x0, x1, y0, y1)`` in head units around the head's rest position (x right, y down).
IDENTITY_BOX = (-1.1, 1.1, -1.2, 1.0)
#: Lab bin size of the identity signature (Delta E units).
IDENTITY_BIN = 8.0
#: Silence floor of the dB loudness envelope, relative to the clip's maximum (-80 dB).
_DB_FLOOR = 1e-4


# ------------------------------------------------------------------------------------------------
# Lip-sync


def check_frames(frames: object, name: str = "frames") -> np.ndarray:
    """Return ``frames`` if it is a uint8 ``(T, H, W, 3)`` array with ``T >= 1``, else raise InputError."""
    if (
        not isinstance(frames, np.ndarray)
        or frames.ndim != 4
        or frames.shape[-1] != 3
        or frames.dtype != np.uint8
        or frames.shape[0] < 1
    ):
        raise InputError(
            f"{name} must be a uint8 numpy array (T, H, W, 3) with T >= 1, got "
            f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}"
        )
    return frames


def loudness_envelope(
    waveform: np.ndarray, sample_rate: int, num_frames: int, fps: float, window: float | None = None
) -> np.ndarray:
    """RMS of ``waveform`` in a ``window``-second window (default ``1 / fps``) centred on each frame time
    ``i / fps``, float32 ``(num_frames,)``; 0 past the end of the audio.

    With ``window=0.04`` it equals :meth:`flowstudio.worlds.faces_audio.SpeechTrack.loudness`.
    """
    wave = np.asarray(waveform, np.float64).reshape(-1)
    if sample_rate <= 0 or fps <= 0 or num_frames < 0:
        raise InputError(
            f"sample_rate and fps must be positive, num_frames >= 0; got {sample_rate}, {fps}, {num_frames}"
        )
    window = 1.0 / fps if window is None else window
    half = max(1, int(round(window * sample_rate / 2)))
    squared = np.concatenate([[0.0], np.cumsum(wave**2)])
    centre = np.round(np.arange(num_frames) / float(fps) * sample_rate).astype(np.int64)
    lo = np.clip(centre - half, 0, len(wave))
    hi = np.clip(centre + half, 0, len(wave))
    energy = (squared[hi] - squared[lo]) / np.maximum(hi - lo, 1)
    return np.sqrt(np.maximum(energy, 0.0)).astype(np.float32)


@dataclass(frozen=True)
class LipSync:
    """Result of :func:`lip_sync`.

    Attributes:
        corr: Pearson correlation at the best lag.
        offset: the best lag in frames (positive: the mouth follows the audio).
        corr_at_0: the correlation at lag 0.
        conf: ``corr`` minus the median correlation over all lags: how much the best lag stands out
            (SyncNet's confidence is the same idea on distances).
        curve: correlation per lag, ``{lag: corr}`` for every lag in ``[-max_offset, max_offset]``.
        speech_frames: number of audio frames counted as speech.
    """

    corr: float
    offset: int
    corr_at_0: float
    conf: float
    curve: dict[int, float] = field(default_factory=dict)
    speech_frames: int = 0


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant or there are fewer than 3 pairs."""
    if len(a) < 3:
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if denom <= 1e-12 * max(1.0, float(np.abs(a).max() * np.abs(b).max()) * len(a)):
        return 0.0
    return float((a * b).sum() / denom)


def lip_sync(
    mouth: np.ndarray, loudness: np.ndarray, *, max_offset: int = 5, speech_threshold: float = 0.1
) -> LipSync | None:
    """Correlation of the mouth opening with the dB loudness envelope over speech frames, searched over
    lags (module docstring). ``None`` when the audio has no speech frame (silent).

    Args:
        mouth: ``(T,)`` mouth opening per video frame (any scale).
        loudness: ``(T,)`` RMS per video frame (:func:`loudness_envelope`).
        max_offset: largest lag searched, frames.
        speech_threshold: speech frames have loudness >= this fraction of the clip's maximum.
    """
    mouth = np.asarray(mouth, np.float64).reshape(-1)
    loudness = np.asarray(loudness, np.float64).reshape(-1)
    if mouth.shape != loudness.shape:
        raise InputError(
            f"mouth and loudness must have one value per frame, got {mouth.shape} and {loudness.shape}"
        )
    if isinstance(max_offset, bool) or not isinstance(max_offset, int) or max_offset < 0:
        raise InputError(f"max_offset must be an integer >= 0, got {max_offset!r}")
    if not 0 < speech_threshold < 1:
        raise InputError(f"speech_threshold must be in (0, 1), got {speech_threshold!r}")
    peak = float(loudness.max()) if loudness.size else 0.0
    if peak <= 0:
        return None
    speech = np.flatnonzero(loudness >= speech_threshold * peak)
    db = 20.0 * np.log10(loudness + _DB_FLOOR * peak)
    curve: dict[int, float] = {}
    for lag in range(-max_offset, max_offset + 1):
        audio_frames = speech[(speech + lag >= 0) & (speech + lag < len(mouth))]
        curve[lag] = _pearson(db[audio_frames], mouth[audio_frames + lag])
    best = max(curve, key=lambda k: (curve[k], -abs(k)))
    conf = curve[best] - float(np.median(list(curve.values())))
    return LipSync(curve[best], best, curve[0], conf, curve, len(speech))


def lip_sync_from_clip(
    frames: np.ndarray,
    waveform: np.ndarray,
    sample_rate: int,
    fps: float,
    *,
    max_offset: int = 5,
    speech_threshold: float = 0.1,
) -> LipSync | None:
    """:func:`lip_sync` of a clip: mouth read from ``frames``, loudness from ``waveform``."""
    mouth = read_mouth_opening(check_frames(frames))
    loudness = loudness_envelope(waveform, sample_rate, len(mouth), fps)
    return lip_sync(mouth, loudness, max_offset=max_offset, speech_threshold=speech_threshold)


def best_lag(curves: list[dict[int, float]]) -> tuple[int, float] | None:
    """The lag maximising the mean of several :attr:`LipSync.curve` and that mean (set-level offset)."""
    if not curves:
        return None
    lags = sorted(set.intersection(*(set(c) for c in curves)))
    if not lags:
        return None
    mean = {lag: float(np.mean([c[lag] for c in curves])) for lag in lags}
    lag = max(mean, key=lambda k: (mean[k], -abs(k)))
    return lag, mean[lag]


def lags_within_one(lags: list[int | float | None]) -> int:
    """How many clips' best lip-sync lags are within +-1 frame (issue 18's lag bar: 5 of 6 clips);
    ``None`` (no lag measured) counts as outside."""
    return sum(1 for lag in lags if lag is not None and abs(lag) <= 1)


# ------------------------------------------------------------------------------------------------
# Structure and pose


def _check_structure(array: object, name: str) -> np.ndarray:
    array = np.asarray(array, np.float32)
    if array.ndim != 2 or array.shape[1] < POSE_CHANNELS + 3 or (array.shape[1] - POSE_CHANNELS) % 3:
        raise InputError(
            f"{name} must be a structure latent (T, 7 + 3K) (pose, translation, scale, K x 3 keypoints), "
            f"got shape {array.shape}"
        )
    return array


def match_structure(generated: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(generated, truth)`` cut to a common length, the truth's keypoints reduced to the generated
    layout (the first ``K`` of :data:`~flowstudio.worlds.faces.KEYPOINT_PRIORITY`, as the toy
    DualForce's 5) when it has more."""
    generated = _check_structure(generated, "generated structure")
    truth = _check_structure(truth, "ground-truth structure")
    k_gen = (generated.shape[1] - POSE_CHANNELS) // 3
    k_true = (truth.shape[1] - POSE_CHANNELS) // 3
    if k_true != k_gen:
        if k_true < k_gen:
            raise InputError(
                f"the ground truth has {k_true} keypoints, the generated structure {k_gen}; "
                "ground truth must have at least as many"
            )
        truth = structure_array(StructureLatent.from_array(truth), k_gen)
    n = min(len(generated), len(truth))
    if n < 1:
        raise InputError("structure latents are empty")
    return generated[:n], truth[:n]


def structure_error(generated: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean absolute error per channel group of :data:`STRUCTURE_GROUPS` (frames aligned from 0)."""
    generated, truth = match_structure(generated, truth)
    diff = np.abs(generated.astype(np.float64) - truth)
    return {name: float(diff[:, part].mean()) for name, part in STRUCTURE_GROUPS.items()}


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """1-D Wasserstein-1 distance between two samples: the area between their empirical CDFs."""
    a = np.sort(np.asarray(a, np.float64).reshape(-1))
    b = np.sort(np.asarray(b, np.float64).reshape(-1))
    if not len(a) or not len(b):
        raise InputError("wasserstein_1d needs two non-empty samples")
    values = np.concatenate([a, b])
    values.sort(kind="mergesort")
    deltas = np.diff(values)
    cdf_a = np.searchsorted(a, values[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(b, values[:-1], side="right") / len(b)
    return float(np.sum(np.abs(cdf_a - cdf_b) * deltas))


def pose_plausibility(generated: np.ndarray, truth: np.ndarray | None = None) -> dict[str, float]:
    """``pose_in_limits`` (fraction of frames with every angle within POSE_LIMITS) and, with ``truth``,
    ``pose_velocity_w1`` (mean over yaw, pitch, roll of the 1-D Wasserstein distance between the
    frame-to-frame changes of generated and true angles, rad / frame) plus one ``..._yaw`` etc. each."""
    generated = _check_structure(generated, "generated structure")
    limits = np.array([POSE_LIMITS[a] for a in ANGLES], np.float64)
    inside = np.all(np.abs(generated[:, :3].astype(np.float64)) <= limits + 1e-6, axis=1)
    out = {"pose_in_limits": float(inside.mean())}
    if truth is None:
        return out
    generated, truth = match_structure(generated, truth)
    if len(generated) < 2:
        return out
    dist = {
        f"pose_velocity_w1_{name}": wasserstein_1d(np.diff(generated[:, i]), np.diff(truth[:, i]))
        for i, name in enumerate(ANGLES)
    }
    out["pose_velocity_w1"] = float(np.mean(list(dist.values())))
    out.update(dist)
    return out


# ------------------------------------------------------------------------------------------------
# Identity


def head_region(height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of :data:`IDENTITY_BOX` in a ``height x width`` TalkingShapes frame."""
    unit = HEAD_FRACTION * min(height, width)
    cx, cy = width / 2, height / 2 + unit * BASE_TRANSLATION[1]
    x0, x1, y0, y1 = IDENTITY_BOX
    rows = slice(max(0, int(round(cy + y0 * unit))), min(height, int(round(cy + y1 * unit))))
    cols = slice(max(0, int(round(cx + x0 * unit))), min(width, int(round(cx + x1 * unit))))
    return rows, cols


def identity_signature(frame: np.ndarray) -> np.ndarray:
    """Colour signature of the head region of a uint8 ``(H, W, 3)`` frame: float32 ``(n, 4)`` rows
    ``[weight, L, a, b]`` (one per occupied Lab bin; weights sum to 1)."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InputError(
            f"an identity frame must be uint8 (H, W, 3), got {getattr(frame, 'dtype', '')} "
            f"{getattr(frame, 'shape', type(frame).__name__)}"
        )
    rows, cols = head_region(*frame.shape[:2])
    lab = rgb_to_lab(frame[rows, cols]).reshape(-1, 3).astype(np.float64)
    if not len(lab):
        raise InputError(f"frame {frame.shape[1]}x{frame.shape[0]} is too small for the identity region")
    _, inverse, counts = np.unique(
        np.floor(lab / IDENTITY_BIN).astype(np.int64), axis=0, return_inverse=True, return_counts=True
    )
    inverse = inverse.reshape(-1)
    means = np.stack([np.bincount(inverse, lab[:, k]) / counts for k in range(3)], axis=1)
    return np.concatenate([(counts / counts.sum())[:, None], means], axis=1).astype(np.float32)


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Earth mover's distance (Lab, Delta E 1976 units) between two frames or two signatures."""
    sig_a, sig_b = (_as_signature(x) for x in (a, b))
    return float(cv2.EMD(sig_a, sig_b, cv2.DIST_L2)[0])


def _as_signature(x: np.ndarray) -> np.ndarray:
    """A signature ``(n, 4)`` as is (float32), a frame ``(H, W, 3)`` through :func:`identity_signature`."""
    if isinstance(x, np.ndarray) and x.ndim == 2:
        if x.shape[1] != 4 or not len(x):
            raise InputError(f"an identity signature must be (n, 4) [weight, L, a, b], got shape {x.shape}")
        return np.ascontiguousarray(x, np.float32)
    return identity_signature(x)


def _window(num_frames: int, fps: float, at: float, window: float) -> tuple[np.ndarray, float]:
    """Frame indices within ``window`` s of time ``at`` (clamped to the clip) and the time used."""
    last = (num_frames - 1) / fps
    centre = min(at, last)
    times = np.arange(num_frames) / fps
    index = np.flatnonzero(np.abs(times - centre) <= window + 1e-9)
    if centre >= last:  # at the end: the last frames only (no frames after the end to balance)
        index = np.flatnonzero(times >= last - window - 1e-9)
    return index, float(centre)


def identity_drift(
    reference: np.ndarray,
    frames: np.ndarray,
    fps: float,
    times: tuple[float, ...] = (10.0, 30.0),
    window: float = 0.2,
) -> dict[float, tuple[float, float]]:
    """``{time: (distance, time_used)}``: mean :func:`identity_distance` between ``reference`` and the
    frames within ``window`` s of each time (the clip's last frames when it is shorter)."""
    frames = check_frames(frames)
    ref = identity_signature(reference)
    cache: dict[int, float] = {}
    out: dict[float, tuple[float, float]] = {}
    for at in times:
        index, used = _window(len(frames), fps, at, window)
        for i in index:
            if int(i) not in cache:
                cache[int(i)] = identity_distance(ref, identity_signature(frames[i]))
        out[at] = (float(np.mean([cache[int(i)] for i in index])), used)
    return out


def identity_variation(frames: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Distance of every frame to ``reference`` (default: the first frame), float64 ``(T,)``."""
    frames = check_frames(frames)
    ref = identity_signature(frames[0] if reference is None else reference)
    return np.array([identity_distance(ref, identity_signature(f)) for f in frames])


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Frames resized to ``height x width`` with OpenCV ``INTER_AREA`` (unchanged when already there)."""
    frames = check_frames(frames)
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])
