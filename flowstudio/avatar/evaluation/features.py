"""A video feature extractor trained on TalkingShapes, for an FVD-style distance without I3D weights.

FVD compares the statistics of I3D features of two sets of clips; I3D has never seen a cartoon head
and its weights are not always at hand. Here a small network learns what matters in the toy world
from the renderer's own ground truth, and pooled features of it play I3D's part (the "2-D conv +
temporal pooling" kind of video feature):

* **Frame encoder** (:class:`ToyFrameEncoder`): RGB at :data:`SIZE` x :data:`SIZE` (other sizes are
  resized with OpenCV ``INTER_AREA``) in ``[-1, 1]``; 4 stride-2 convs with batch norm (64 -> 4 px),
  a linear layer to 128 and a linear bottleneck to an :data:`EMBED_DIM`-d *frame embedding*; a linear
  head predicts the frame's targets from it.
* **Targets** (:data:`FRAME_TARGETS`, standardised over the training frames): the frame's mouth
  opening; its head pose, translation and scale, blink and smile; the identity (skin, hair, shirt
  and background colours, hair style, face shape, background kind; eye colour and the numeric face
  parameters are left out: a few pixels at 64 x 64). The loss weighs the three groups equally, so
  that 24 identity targets do not drown the mouth.
* **Clip features**: a window of :data:`WINDOW` consecutive frames (0.64 s at 25 fps) is described by
  the mean, the standard deviation and the mean absolute frame-to-frame change of its frame
  embeddings (``3 x EMBED_DIM`` = :data:`FEATURE_DIM` numbers): appearance, how much it varies and how
  fast - a talking mouth, a moving head, a frozen frame or flicker all show.
* **Data**: ``num_clips`` short clips of the TalkingShapes stream ``data_seed``
  (:func:`flowstudio.worlds.faces_dataset.clip_identity_speech`) rendered at 64 x 64 and kept in memory
  (many identities, few frames each); each step draws random frames of random clips; ``val_clips``
  further clips of the stream measure R^2 per target group.

:func:`train_feature_extractor` is deterministic for a seed (on one machine and thread count) and
writes ``config.json`` (settings, target statistics, validation) and ``model.safetensors``;
:func:`load_feature_extractor` reads them back. A clip's features are those of its non-overlapping
windows (:meth:`ToyFeatureExtractor.clip_features`); :func:`frechet_video_distance` is the Fréchet
distance of two sets of window features (:func:`flowstudio.bench.metrics.reference.frechet_distance`).
With few windows the covariances are poorly estimated (rank-deficient below :data:`FEATURE_DIM` + 1
windows) and the distance is biased upwards: compare sets of the same size only.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flowstudio.bench.metrics.reference import feature_stats, frechet_distance
from flowstudio.checks import check_int
from flowstudio.errors import InputError

logger = logging.getLogger(__name__)

FORMAT = "flowstudio.avatar.toy_features/2"
WINDOW = 16
SIZE = 64
EMBED_DIM = 16
FEATURE_DIM = 3 * EMBED_DIM
FEATURE_DATA_SEED = 7_000  # TalkingShapes stream of the training clips (not a DualForce training seed)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def _names() -> tuple[tuple[str, ...], dict[str, tuple[int, int]]]:
    from flowstudio.worlds.faces import BACKGROUNDS, FACE_SHAPES, HAIR_STYLES

    groups = {
        "mouth": ["mouth"],
        "pose": ["yaw", "pitch", "roll", "tx", "ty", "tz", "scale", "blink", "smile"],
        "identity": [f"{part}_{c}" for part in ("skin", "hair", "shirt", "bg") for c in "rgb"]
        + [f"hair_style_{s}" for s in HAIR_STYLES]
        + [f"face_shape_{s}" for s in FACE_SHAPES]
        + [f"background_{s}" for s in BACKGROUNDS],
    }
    names: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    for group, items in groups.items():
        spans[group] = (len(names), len(names) + len(items))
        names += items
    return tuple(names), spans


#: Per-frame targets, in the column order of :func:`_clip_arrays`, and their groups' column spans.
FRAME_TARGETS, TARGET_GROUPS = _names()


# ------------------------------------------------------------------------------------------------
# Network


class ToyFrameEncoder(nn.Module):
    """``(N, 3, 64, 64)`` in ``[-1, 1]`` -> frame embeddings ``(N, embed_dim)`` (:meth:`embed`); the
    training head maps them to the :data:`FRAME_TARGETS` (:meth:`forward`)."""

    def __init__(self, embed_dim: int = EMBED_DIM, num_targets: int = len(FRAME_TARGETS)) -> None:
        super().__init__()
        act = nn.GELU
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 16, 4, 2, 1), nn.BatchNorm2d(16), act(),
            nn.Conv2d(16, 32, 4, 2, 1), nn.BatchNorm2d(32), act(),
            nn.Conv2d(32, 32, 4, 2, 1), nn.BatchNorm2d(32), act(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.BatchNorm2d(64), act(),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), act(), nn.Linear(128, embed_dim),
        )  # fmt: skip
        self.head = nn.Linear(embed_dim, num_targets)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        return self.encoder(frames)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(frames))


def window_features(embeddings: torch.Tensor) -> torch.Tensor:
    """Frame embeddings ``(B, T, E)`` of windows -> ``(B, 3 E)``: mean, standard deviation and mean
    absolute frame-to-frame change over time."""
    return torch.cat(
        [
            embeddings.mean(1),
            embeddings.std(1, unbiased=False),
            (embeddings[:, 1:] - embeddings[:, :-1]).abs().mean(1),
        ],
        dim=-1,
    )


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float ``(N, 3, H, W)`` in ``[-1, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# ------------------------------------------------------------------------------------------------
# Data


def _clip_arrays(seed: int, index: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 ``(T, 64, 64, 3)`` and per-frame targets ``(T, len(FRAME_TARGETS))`` of TalkingShapes
    clip ``index`` of stream ``seed``."""
    from flowstudio.worlds.faces import (
        BACKGROUND_COLORS,
        BACKGROUNDS,
        FACE_SHAPES,
        HAIR_COLORS,
        HAIR_STYLES,
        SHIRT_COLORS,
        SKIN_TONES,
        render_talking_clip,
    )
    from flowstudio.worlds.faces_dataset import clip_identity_speech

    identity, speech = clip_identity_speech(seed, index)
    clip = render_talking_clip(identity, speech, seconds=seconds, height=SIZE, width=SIZE)
    m = clip.motion
    colours = [
        SKIN_TONES[identity.skin],
        HAIR_COLORS[identity.hair_color],
        SHIRT_COLORS[identity.shirt],
        BACKGROUND_COLORS[identity.background_color],
    ]
    static = np.concatenate(
        [
            np.asarray(colours, np.float64).reshape(-1) / 255.0,
            np.eye(len(HAIR_STYLES))[HAIR_STYLES.index(identity.hair_style)],
            np.eye(len(FACE_SHAPES))[FACE_SHAPES.index(identity.face_shape)],
            np.eye(len(BACKGROUNDS))[BACKGROUNDS.index(identity.background)],
        ]
    )
    per_frame = np.stack(
        [m.mouth, m.yaw, m.pitch, m.roll, m.tx, m.ty, m.tz, m.scale, m.blink, m.smile], axis=1
    ).astype(np.float64)
    per_frame = np.concatenate([per_frame, np.broadcast_to(static, (len(per_frame), len(static)))], axis=1)
    return clip.frames, per_frame


def _render_set(seed: int, indices: range, seconds: float, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    from tqdm import tqdm

    frames, rows = [], []
    for i in tqdm(indices, desc="render TalkingShapes", disable=not progress, leave=False):
        f, r = _clip_arrays(seed, i, seconds)
        frames.append(f)
        rows.append(r)
    return np.stack(frames), np.stack(rows)


# ------------------------------------------------------------------------------------------------
# Training


def train_feature_extractor(
    out_dir: str | Path,
    *,
    steps: int = 800,
    num_clips: int = 256,
    clip_seconds: float = 0.64,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    data_seed: int = FEATURE_DATA_SEED,
    val_clips: int = 32,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the toy feature extractor and write it to ``out_dir`` (module docstring).

    Args:
        out_dir: output folder (created); holds ``config.json`` and ``model.safetensors`` afterwards.
        steps: optimiser steps (AdamW, short warm-up, cosine decay to 10 %).
        num_clips: training clips of ``clip_seconds`` rendered at 64 x 64 (one identity each).
        clip_seconds: clip length.
        batch_size: frames per step, drawn at random over all clips.
        lr: peak learning rate.
        seed: network initialisation and frame sampling.
        data_seed: TalkingShapes stream of the clips (training uses indices ``0 .. num_clips - 1``,
            validation the next ``val_clips``).
        val_clips: clips for the validation R^2 (0: none).
        threads: torch CPU threads while training (``None``: unchanged); 1 is the fastest on a busy
            2-core machine.
        progress: show progress bars.

    Returns:
        The saved config (settings, target statistics, first and final loss, validation R^2 per group).

    Raises:
        InputError: a setting is out of range, or ``out_dir`` exists and is not a folder.
    """
    for name, value, low in (
        ("steps", steps, 1),
        ("num_clips", num_clips, 1),
        ("batch_size", batch_size, 2),
        ("val_clips", val_clips, 0),
        ("seed", seed, 0),
        ("data_seed", data_seed, 0),
    ):
        check_int(name, value, minimum=low)
    if (
        isinstance(clip_seconds, bool)
        or not isinstance(clip_seconds, int | float)
        or not 0.2 <= clip_seconds <= 60
    ):
        raise InputError(f"clip_seconds must be a number from 0.2 to 60, got {clip_seconds!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a folder")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(
            out, steps, num_clips, float(clip_seconds), batch_size, lr, seed, data_seed, val_clips, progress
        )
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    out: Path,
    steps: int,
    num_clips: int,
    clip_seconds: float,
    batch_size: int,
    lr: float,
    seed: int,
    data_seed: int,
    val_clips: int,
    progress: bool,
) -> dict[str, Any]:
    from safetensors.torch import save_file
    from tqdm import tqdm

    from flowstudio import __version__

    start = time.perf_counter()
    frames, rows = _render_set(data_seed, range(num_clips), clip_seconds, progress)
    frames = frames.reshape(-1, *frames.shape[2:])
    rows = rows.reshape(-1, rows.shape[-1])
    mean = rows.mean(0)
    std = np.maximum(rows.std(0), 1e-3)
    targets = torch.from_numpy(((rows - mean) / std).astype(np.float32))
    groups = tuple(TARGET_GROUPS.values())

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 3])
    model = ToyFrameEncoder()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda i: (
            min(1.0, (i + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(i, steps) / steps)))
        ),
    )
    losses: list[float] = []
    model.train()
    for _ in tqdm(range(steps), desc="train features", disable=not progress, leave=False):
        pick = rng.integers(len(frames), size=batch_size)
        loss = _balanced_mse(model(_to_tensor(frames[pick])), targets[pick], groups)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
    model.eval()

    validation: dict[str, float] = {}
    if val_clips:
        v_frames, v_rows = _render_set(
            data_seed, range(num_clips, num_clips + val_clips), clip_seconds, progress
        )
        v_frames = v_frames.reshape(-1, *v_frames.shape[2:])
        truth = (v_rows.reshape(-1, v_rows.shape[-1]) - mean) / std
        with torch.no_grad():
            pred = torch.cat([model(_to_tensor(v_frames[k : k + 256])) for k in range(0, len(v_frames), 256)])
        for group, (a, b) in TARGET_GROUPS.items():
            validation[group] = _r2(pred.numpy()[:, a:b], truth[:, a:b])

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS_FILE))
    config = {
        "format": FORMAT,
        "window": WINDOW,
        "size": SIZE,
        "embed_dim": EMBED_DIM,
        "feature_dim": FEATURE_DIM,
        "targets": list(FRAME_TARGETS),
        "target_groups": {k: list(v) for k, v in TARGET_GROUPS.items()},
        "target_mean": mean.tolist(),
        "target_std": std.tolist(),
        "settings": {
            "steps": steps,
            "num_clips": num_clips,
            "clip_seconds": clip_seconds,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "data_seed": data_seed,
            "val_clips": val_clips,
            "torch_threads": torch.get_num_threads(),
        },
        "first_loss": float(np.mean(losses[:20])),
        "final_loss": float(np.mean(losses[-20:])),
        "validation_r2": validation,
        "train_seconds": round(time.perf_counter() - start, 1),
        "flowstudio": __version__,
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
    logger.info("toy feature extractor written to %s (validation R2 %s)", out, validation)
    return config


def _balanced_mse(
    pred: torch.Tensor, target: torch.Tensor, groups: tuple[tuple[int, int], ...]
) -> torch.Tensor:
    """Mean over target groups of each group's MSE, so that 24 identity targets do not drown the mouth."""
    return torch.stack([F.mse_loss(pred[..., a:b], target[..., a:b]) for a, b in groups]).mean()


def _r2(pred: np.ndarray, truth: np.ndarray) -> float:
    """Coefficient of determination over all columns together."""
    total = float(((truth - truth.mean(0)) ** 2).sum())
    return float(1 - ((pred - truth) ** 2).sum() / max(total, 1e-12))


# ------------------------------------------------------------------------------------------------
# Use


def missing_reason(path: str | Path | None) -> str | None:
    """Why there is no usable extractor at ``path`` (a sentence), or ``None`` when its files are there."""
    hint = "train one with `flowstudio avatar train-features --out DIR` and pass --features DIR"
    if path is None:
        return f"no toy feature extractor given; {hint}"
    folder = Path(path)
    absent = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if absent:
        return f"no toy feature extractor at {folder} (missing {', '.join(absent)}); {hint}"
    return None


class ToyFeatureExtractor:
    """A trained :class:`ToyFrameEncoder` and its config, on CPU (``device`` to move it)."""

    def __init__(self, model: ToyFrameEncoder, config: dict[str, Any], path: Path | None = None) -> None:
        self.model = model.eval()
        self.config = config
        self.path = path

    @property
    def window(self) -> int:
        return int(self.config["window"])

    def frame_embeddings(self, frames: np.ndarray) -> np.ndarray:
        """Embeddings float64 ``(T, embed_dim)`` of a uint8 ``(T, H, W, 3)`` clip (resized to 64 x 64)."""
        from flowstudio.avatar.evaluation.metrics import resize_frames

        size = int(self.config["size"])
        frames = resize_frames(frames, size, size)
        param = next(self.model.parameters())
        with torch.no_grad():
            out = [
                self.model.embed(_to_tensor(frames[i : i + 256]).to(param.device, param.dtype))
                for i in range(0, len(frames), 256)
            ]
        return torch.cat(out).double().cpu().numpy()

    def clip_features(self, frames: np.ndarray) -> np.ndarray:
        """Features of the non-overlapping :data:`WINDOW`-frame windows of a uint8 ``(T, H, W, 3)`` clip:
        float64 ``(T // WINDOW, feature_dim)`` (empty when the clip is shorter than one window)."""
        count = len(frames) // self.window
        if not count:
            return np.zeros((0, int(self.config["feature_dim"])))
        embeddings = self.frame_embeddings(frames[: count * self.window])
        windows = torch.from_numpy(embeddings).reshape(count, self.window, -1)
        return window_features(windows).numpy()


def load_feature_extractor(path: str | Path, device: str | torch.device = "cpu") -> ToyFeatureExtractor:
    """Load what :func:`train_feature_extractor` wrote.

    Raises:
        InputError: the folder lacks its files, or they are not a toy feature extractor.
    """
    from safetensors.torch import load_file

    reason = missing_reason(path)
    if reason:
        raise InputError(reason)
    folder = Path(path)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{folder / CONFIG_FILE}: unreadable ({err}); train the extractor again") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(
            f"{folder / CONFIG_FILE} is not a toy feature extractor config (format {FORMAT!r} expected, "
            f"got {config.get('format') if isinstance(config, dict) else type(config).__name__!r}); train "
            "one with `flowstudio avatar train-features --out DIR`"
        )
    model = ToyFrameEncoder(int(config["embed_dim"]), len(config["targets"]))
    try:
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    except Exception as err:  # safetensors raises several types for a bad file
        raise InputError(
            f"{folder / WEIGHTS_FILE}: cannot be loaded into the toy feature extractor ({err}); "
            "train it again"
        ) from err
    return ToyFeatureExtractor(model.to(device), config, folder)


def frechet_video_distance(
    generated: list[np.ndarray] | np.ndarray, real: list[np.ndarray] | np.ndarray
) -> float:
    """Fréchet distance between two sets of features (lists of per-clip ``(n, D)`` arrays or one array).

    Raises:
        InputError: fewer than 2 feature rows on a side.
    """
    a = np.concatenate([np.atleast_2d(x) for x in generated]) if isinstance(generated, list) else generated
    b = np.concatenate([np.atleast_2d(x) for x in real]) if isinstance(real, list) else real
    if min(len(a), len(b)) < 2:
        raise InputError(
            f"a Fréchet distance needs at least 2 feature windows per set, got {len(a)} and {len(b)}"
        )
    return max(0.0, frechet_distance(*feature_stats(a), *feature_stats(b)))
