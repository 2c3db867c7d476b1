"""Near-duplicate clips by perceptual hashes (imagehash's pHash of a few frames), for the pair-dataset
pipeline (issue 17, item 1).

A clip's signature is the 64-bit pHash of ``frames`` evenly spaced frames; two clips are near
duplicates when their mean Hamming distance over those frames is at most ``max_distance`` (of 64).
A re-encoded or slightly recoloured copy stays within a few bits; different ShapeWorld clips are
tens of bits apart (``tests/test_data_dedup.py``). :func:`near_duplicates` keeps the first clip of each
group, in the order given, so a re-run over the same clips drops the same ones.
"""

from __future__ import annotations

import numpy as np

FRAMES = 4
MAX_DISTANCE = 8.0


def signature(clip: np.ndarray, frames: int = FRAMES) -> np.ndarray:
    """pHashes ``(frames, 64)`` (bool) of evenly spaced frames of a uint8 ``(T, H, W, 3)`` clip."""
    import imagehash
    from PIL import Image

    picks = np.unique(np.linspace(0, len(clip) - 1, frames).round().astype(int))
    return np.stack(
        [imagehash.phash(Image.fromarray(np.ascontiguousarray(clip[i]))).hash.reshape(-1) for i in picks]
    )


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Hamming distance (bits of 64) between two signatures."""
    if a.shape != b.shape:
        raise ValueError(f"signatures of different shapes {a.shape} and {b.shape}")
    return float((a != b).sum(axis=1).mean())


def near_duplicates(signatures: list[np.ndarray], max_distance: float = MAX_DISTANCE) -> dict[int, int]:
    """``{index: index of the earlier clip it duplicates}`` for every clip after the first of its group.

    Each clip is compared with every clip kept before it (the first match, in order, is named), on
    64-bit words with a population count, so tens of thousands of clips take seconds.
    """
    if not signatures:
        return {}
    shapes = {sig.shape for sig in signatures}
    if len(shapes) != 1:
        raise ValueError(f"signatures of different shapes {sorted(shapes)}")
    words = np.stack([np.packbits(sig.astype(bool), axis=1).view(">u8")[:, 0] for sig in signatures])
    frames = words.shape[1]
    limit = max_distance * frames  # mean over frames <= max_distance, as a sum of integers
    kept = np.empty_like(words)
    kept_index: list[int] = []
    dropped: dict[int, int] = {}
    for i, word in enumerate(words):
        count = len(kept_index)
        if count:
            bits = np.bitwise_count(kept[:count] ^ word).sum(axis=1)
            match = np.flatnonzero(bits <= limit + 1e-9)
            if match.size:
                dropped[i] = kept_index[int(match[0])]
                continue
        kept[count] = word
        kept_index.append(i)
    return dropped
