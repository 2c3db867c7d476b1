"""Clip files of the benchmark: lossless ``.npz`` / ``.npy`` arrays, or anything :func:`read_video` reads.

Frames are uint8 ``(T, H, W, 3)`` RGB; masks are bool ``(T, H, W)`` (True = the edited object).

* ``.npz`` holds one array under the key ``frames`` (clips) or ``mask`` (masks); ``.npy`` one array.
  The built-in sets and ``bench run`` outputs use ``.npz``: lossless, so the ground-truth oracle
  scores an exact infinite PSNR instead of an H.264 round trip.
* a video file (mp4, mov, webm, gif, ...) or a folder of PNG/JPEG frames: read by
  :func:`flowstudio.video.read_video`. A mask video is thresholded: a pixel is in the mask when its
  first channel is above 127 (white object on black).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from flowstudio.errors import VideoError
from flowstudio.video import IMAGE_SUFFIXES, read_image, read_video

ARRAY_SUFFIXES = (".npz", ".npy")


def _load_array(path: Path, key: str) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as data:
            if key in data:
                return data[key]
            if len(data.files) == 1:
                return data[data.files[0]]
            raise VideoError(f"{path}: .npz holds {data.files}; put the clip under the key {key!r}")
    except (OSError, ValueError) as err:
        raise VideoError(
            f"{path}: cannot read the array ({err}); write it with numpy.savez_compressed"
        ) from err


def load_frames(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a clip as uint8 ``(T, H, W, 3)``; a single image gives one frame.

    Raises:
        VideoError: missing or unreadable file, or an array of the wrong shape or dtype.
    """
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        frames = _load_array(path, "frames")
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        frames = read_image(path)[None]
    else:
        frames = read_video(path).frames
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideoError(
            f"{path}: a clip must be uint8 (frames, height, width, 3), got {frames.dtype} {frames.shape}"
        )
    return frames


def load_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask as bool ``(T, H, W)``: arrays as they are (non-zero = object), videos thresholded."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        mask = _load_array(path, "mask")
        if mask.ndim == 4:
            mask = mask[..., 0]
        if mask.ndim != 3:
            raise VideoError(f"{path}: a mask must be (frames, height, width), got shape {mask.shape}")
        return mask.astype(bool) if mask.dtype == bool else mask > (127 if mask.dtype == np.uint8 else 0.5)
    frames = load_frames(path)
    return frames[..., 0] > 127


def save_frames(path: str | os.PathLike[str], frames: np.ndarray) -> Path:
    """Write uint8 ``(T, H, W, 3)`` frames to a compressed ``.npz`` (atomic: temp file, then rename)."""
    return _save(Path(path), "frames", np.ascontiguousarray(frames, dtype=np.uint8))


def save_mask(path: str | os.PathLike[str], mask: np.ndarray) -> Path:
    """Write a bool ``(T, H, W)`` mask to a compressed ``.npz`` (atomic)."""
    return _save(Path(path), "mask", np.ascontiguousarray(mask, dtype=bool))


def _save(path: Path, key: str, array: np.ndarray) -> Path:
    """``numpy.savez_compressed`` layout with a fixed zip timestamp, so equal arrays give equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(tmp, "w") as archive, archive.open(info, "w", force_zip64=True) as handle:
        np.lib.format.write_array(handle, array, allow_pickle=False)
    os.replace(tmp, path)
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, or of a folder (its files' names and bytes in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
