"""TalkingShapes clips as DualForce training items (the toy world's data for ``avatar train``).

Item ``i`` is a pure function of ``(seed, i)``: the identity and speech of TalkingShapes clip ``i``
(:func:`flowstudio.worlds.faces_dataset.clip_identity_speech`) rendered at the model's image size
for exactly the training sequence (``num_chunks`` chunks of ``4 * frames_per_chunk`` frames at 25 fps).
The sink frame is the clip's first frame encoded as a reference image, so the sequence starts from the
reference pose, as a stream does. Audio features come from the config's extractor (log-mel in the
toy); the structure rows are the ground-truth LivePortrait-shaped latent (``structure_array`` with the
config's keypoint count). Items are rendered once and kept in memory (toy sizes: ~20 KB each).

Held-out evaluation uses another ``seed`` (identities and speech both change with it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from flowstudio.avatar.model.audio import make_extractor
from flowstudio.avatar.model.codec import ToyCodec
from flowstudio.avatar.model.config import DualForceConfig
from flowstudio.avatar.model.rates import BlockLayout, TokenRates
from flowstudio.errors import InputError


class TalkingShapesDataset:
    """``{"video": (C, 1 + F, h, w), "struct": (1 + S, C_s), "audio": (1 + A, C_a)}`` items whose first
    frame / row is the sink (same contract as
    :class:`flowstudio.avatar.training.train.SyntheticTalkingDataset`),
    plus :meth:`clip` for the rendered frames, waveform and ground truth of an item."""

    def __init__(
        self,
        config: DualForceConfig,
        num_chunks: int,
        size: int,
        seed: int = 0,
        codec: ToyCodec | None = None,
        mouth_region: bool = False,
    ) -> None:
        if size < 1:
            raise InputError(f"dataset_size must be >= 1, got {size}")
        self.config, self.size, self.seed = config, size, seed
        self.mouth_region = mouth_region  # items also get "mouth": where the mouth is, per latent pixel
        self.codec = codec or ToyCodec.for_config(config)
        if self.codec.channels != config.video_input.latent_channels:
            raise InputError(
                f"the codec makes {self.codec.channels} latent channels, the model expects "
                f"{config.video_input.latent_channels} (video_input.latent_channels)"
            )
        self.rates = TokenRates.from_config(config.rates)
        self.layout = BlockLayout.build(self.rates, 0, num_chunks, sink=True)
        self.num_frames = num_chunks * self.rates.frames_per_chunk * self.rates.frames_per_latent
        self.seconds = self.num_frames / float(config.rates.video_fps)
        self.extractor = make_extractor(config.audio)
        self._items: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.size

    def clip(self, index: int) -> Any:
        """The rendered :class:`~flowstudio.worlds.faces.TalkingClip` of item ``index``."""
        from flowstudio.worlds.faces import render_talking_clip
        from flowstudio.worlds.faces_dataset import clip_identity_speech

        if not 0 <= index < self.size:
            raise IndexError(f"item {index} out of range (dataset has {self.size})")
        identity, speech = clip_identity_speech(self.seed, index)
        height, width = self.config.image_size
        return render_talking_clip(
            identity,
            speech,
            seconds=max(self.seconds, 0.2),  # the renderer's shortest clip; items cut it to length
            height=height,
            width=width,
            fps=self.config.rates.video_fps,
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index not in self._items:
            self._items[index] = self._build(index)
        return self._items[index]

    def _build(self, index: int) -> dict[str, torch.Tensor]:
        from flowstudio.worlds.faces import structure_array

        clip = self.clip(index)
        lay = self.layout
        video = torch.cat(
            [
                self.codec.encode_image(clip.frames[0]),
                self.codec.encode_frames(clip.frames[: self.num_frames]),
            ],
            dim=2,
        )[0]
        structure = torch.from_numpy(structure_array(clip.structure, self.config.structure.num_keypoints))
        sink_s = int((lay.struct_ids == 0).sum())
        rows_s = len(lay.struct_ids) - sink_s
        struct = self.config.structure.normalize(structure[:rows_s].float())
        struct = torch.cat([torch.zeros(sink_s, structure.shape[1]), struct])
        features = self.extractor(clip.audio, clip.sample_rate)
        sink_a = int((lay.audio_ids == 0).sum())
        rows_a = len(lay.audio_ids) - sink_a
        if features.shape[0] < rows_a:  # the extractor drops a partial last hop: repeat the last row
            features = torch.cat([features, features[-1:].expand(rows_a - features.shape[0], -1)])
        audio = torch.cat([torch.zeros(sink_a, features.shape[1]), features[:rows_a].float()])
        item = {"video": video.float(), "struct": struct, "audio": audio}
        if self.mouth_region:
            item["mouth"] = mouth_region(clip.frames[: self.num_frames], tuple(video.shape[-2:]))
        return item

    def raw_structure(self, index: int) -> torch.Tensor:
        """Ground-truth structure rows of item ``index`` (no sink), un-normalised, ``(S, C_s)``."""
        from flowstudio.worlds.faces import structure_array

        clip = self.clip(index)
        rows = int((self.layout.struct_ids != 0).sum())
        return torch.from_numpy(structure_array(clip.structure, self.config.structure.num_keypoints))[
            :rows
        ].float()

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        items = [self[i] for i in indices]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def structure_statistics(
    config: DualForceConfig, num_chunks: int, clips: int = 32, seed: int = 99_991
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the raw structure latent over ``clips`` TalkingShapes clips of
    ``seed`` (std floored at 0.01 so nearly constant channels are not blown up)."""
    raw_config = config.replace({"structure": {"mean": None, "std": None}})
    data = TalkingShapesDataset(raw_config, num_chunks, clips, seed)
    rows = torch.cat([data.raw_structure(i) for i in range(clips)])
    mean = rows.mean(0)
    std = rows.std(0).clamp_min(0.01)
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def mouth_region(frames: np.ndarray, latent_size: tuple[int, int], dilate_px: int = 2) -> torch.Tensor:
    """Latent pixels ``(h, w)`` (0/1 float) over which the clip's mouth interior shows at any frame,
    dilated by ``dilate_px`` pixels first (the lips around it, and the head's small motion); all zeros
    for a clip whose mouth never opens. Read from the pixels with the world's analytic mouth mask."""
    import cv2

    from flowstudio.worlds.faces import mouth_interior_mask

    seen = (mouth_interior_mask(frames).max(axis=0) > 0.3).astype(np.uint8)
    if dilate_px > 0:
        seen = cv2.dilate(seen, np.ones((2 * dilate_px + 1, 2 * dilate_px + 1), np.uint8))
    h, w = latent_size
    pooled = torch.from_numpy(seen).float()[None, None]
    return torch.nn.functional.adaptive_max_pool2d(pooled, (h, w))[0, 0]
