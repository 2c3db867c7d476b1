"""Step 5: audio-visual sync check and offset correction.

**Offline proxy (what runs).** A mouth-opening signal per frame is cross-correlated with the audio's
loudness envelope over lags of ``-N..+N`` frames:

* mouth signal - from pixels of the aligned crop, whatever the detector: the vertical edge
  energy of the mouth region (the lower middle of the crop), which grows as the lips part. It is a
  proxy: beards, teeth, hands and lighting disturb it on real faces; on TalkingShapes it follows
  the true opening (r 0.80-0.97 on ten clips, every skin tone). MediaPipe's face-mesh lip gap was
  tried and not kept: r 0.84 with the true opening on a 4 s toy clip, and on 2 s clips its sync
  confidence fell below 0.5 on 2 of 4 clips where the pixel signal passed.
* loudness - RMS of the 16 kHz audio in a 40 ms window centred on each frame time.

Both are standardised; the correlation at lag ``L`` pairs the mouth at frame ``t`` with the sound at
``t - L``, so ``L > 0`` means the mouth follows the sound by ``L`` frames. The best lag is the
**offset** and its correlation the **confidence**. A segment whose confidence is below
``sync_min_confidence`` is refused (``sync/too_weak``: dubbed, off-screen speaker, music). An offset
with ``|L| > sync_tolerance`` is corrected by trimming: the first ``L`` video frames and the last ``L``
frames' worth of audio go (``L < 0``: the other way round), so sound and mouth line up.

**SyncNet** (``--syncnet DIR``): :class:`SyncNetWeights` checks the folder (syncnet_python's
``syncnet_v2.model``, a state dict with ``netcnnaud.* netfcaud.* netcnnlip.* netfclip.*``) and then
stops with a clear error: the SyncNet network and its MFCC front end are not implemented here yet.
It never falls back to the proxy silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flowstudio.errors import CheckpointError

SYNCNET_FILE = "syncnet_v2.model"
SYNCNET_PREFIXES = ("netcnnaud.", "netfcaud.", "netcnnlip.", "netfclip.")


@dataclass(frozen=True)
class SyncResult:
    offset: int
    confidence: float
    correlations: tuple[float, ...]
    mouth_source: str

    def to_dict(self) -> dict:
        return {
            "offset_frames": self.offset,
            "confidence": round(self.confidence, 4),
            "mouth_source": self.mouth_source,
            "correlations": [round(c, 4) for c in self.correlations],
        }


def mouth_signal_pixels(crops: np.ndarray) -> np.ndarray:
    """Vertical edge energy in the mouth region of aligned square crops ``(T, S, S, 3)``.

    An opening mouth adds horizontal edges (lip to cavity to lip) in the lower middle of the face.
    Edge energy was chosen over "fraction of dark pixels" because darkness fails on dark skin
    (on TalkingShapes: r with the true opening 0.02-0.4 for the darkest skins, vs 0.89-0.91 for
    edge energy; r 0.80-0.97 over all ten skins tested).
    """
    size = crops.shape[1]
    region = crops[:, int(0.58 * size) : int(0.84 * size), int(0.3 * size) : int(0.7 * size)]
    luma = region.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.array([np.abs(cv2.Sobel(image, cv2.CV_32F, 0, 1)).mean() for image in luma], np.float32)


def loudness_envelope(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """RMS of ``audio`` in a 40 ms window centred on each frame time, ``(num_frames,)``."""
    half = int(0.02 * sample_rate)
    centres = (np.arange(num_frames) / fps * sample_rate).astype(np.int64)
    padded = np.pad(audio.astype(np.float64) ** 2, (half, half))
    cumulative = np.concatenate([[0.0], np.cumsum(padded)])
    energy = (cumulative[centres + 2 * half] - cumulative[centres]) / (2 * half)
    return np.sqrt(np.maximum(energy, 0)).astype(np.float32)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    # smooth out single-frame noise (video compression, detector jitter) before correlating
    x = cv2.GaussianBlur(x[None], (1, 3), 0)[0] if len(x) >= 3 else x
    return (x - x.mean()) / (x.std() + 1e-9)


def estimate_offset(
    mouth: np.ndarray, loudness: np.ndarray, max_offset: int, mouth_source: str
) -> SyncResult:
    """Best lag (mouth follows sound by ``offset`` frames) and its Pearson correlation."""
    m, a = _standardise(mouth), _standardise(loudness)
    n = len(m)
    correlations = []
    for lag in range(-max_offset, max_offset + 1):
        # mouth[t] against sound[t - lag]
        mouth_part = m[max(lag, 0) : n + min(lag, 0)]
        sound_part = a[max(-lag, 0) : n - max(lag, 0)]
        if len(mouth_part) < 8 or mouth_part.std() < 1e-9 or sound_part.std() < 1e-9:
            correlations.append(0.0)
            continue
        correlations.append(float(np.corrcoef(mouth_part, sound_part)[0, 1]))
    best = int(np.argmax(correlations))
    return SyncResult(best - max_offset, correlations[best], tuple(correlations), mouth_source)


def correction(offset: int, tolerance: int) -> int:
    """Frames to trim (``offset`` when it is outside the tolerance, else 0)."""
    return offset if abs(offset) > tolerance else 0


def apply_correction(
    frames_range: tuple[int, int], audio: np.ndarray, shift: int, samples_per_frame: int
) -> tuple[tuple[int, int], np.ndarray]:
    """Trim a segment so the mouth at output frame ``t`` meets the sound that drove it.

    ``shift > 0`` (mouth late): drop the first ``shift`` frames and the last ``shift`` frames of audio.
    ``shift < 0`` (mouth early): drop the last ``|shift|`` frames and the first ``|shift|`` of audio.
    """
    start, end = frames_range
    k = abs(shift) * samples_per_frame
    if shift > 0:
        return (start + shift, end), audio[: len(audio) - k]
    if shift < 0:
        return (start, end + shift), audio[k:]
    return frames_range, audio


class SyncNetWeights:
    """Checks a local SyncNet folder (syncnet_python's layout); the network itself is not built yet."""

    def __init__(self, folder: str | Path) -> None:
        root = Path(folder)
        path = root / SYNCNET_FILE
        if not path.is_file():
            raise CheckpointError(
                f"SyncNet folder {str(root)!r} has no {SYNCNET_FILE}; put syncnet_python's "
                f"data/{SYNCNET_FILE} there (it is not downloaded for you), or leave out --syncnet "
                "to use the offline mouth/loudness proxy"
            )
        import torch

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for a damaged or non-tensor file
            raise CheckpointError(f"{path}: not a readable SyncNet state dict ({err})") from err
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: holds a {type(state).__name__}, expected a state dict")
        missing = [p for p in SYNCNET_PREFIXES if not any(k.startswith(p) for k in state)]
        if missing:
            raise CheckpointError(
                f"{path}: state dict has no {', '.join(p + '*' for p in missing)} tensors; "
                "not syncnet_python's syncnet_v2.model"
            )
        self.path = path
        self.state = state

    def evaluate(self, *args: object, **kwargs: object) -> SyncResult:
        raise NotImplementedError(
            f"SyncNet weights at {self.path} are valid, but flowstudio does not implement the SyncNet "
            "network and MFCC front end yet; run without --syncnet (offline mouth/loudness proxy)"
        )
