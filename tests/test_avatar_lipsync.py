"""The mouth-weighted video loss of the toy DualForce (``train.mouth_weight``)."""

from __future__ import annotations

from pathlib import Path

import torch

from flowstudio.avatar.model.config import load_config
from flowstudio.avatar.training.losses import video_loss
from flowstudio.avatar.training.toy_data import TalkingShapesDataset, mouth_region
from flowstudio.worlds.faces import mouth_interior_mask

TOY = Path(__file__).parents[1] / "configs" / "dualforce" / "toy.yaml"


def test_uniform_pixel_weights_change_nothing_and_mouth_errors_count_more():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 3, 4, 8, 8, generator=g), torch.randn(2, 3, 4, 8, 8, generator=g)
    frame_weight = torch.tensor([[0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    plain = video_loss(pred, target, frame_weight)
    assert torch.allclose(video_loss(pred, target, frame_weight, torch.full((2, 8, 8), 3.0)), plain)

    region = torch.zeros(2, 8, 8)
    region[:, 4, 4] = 1.0
    only_mouth_wrong = target.clone()
    only_mouth_wrong[..., 4, 4] += 1.0
    other_pixel_wrong = target.clone()
    other_pixel_wrong[..., 0, 0] += 1.0
    weights = 1.0 + 10.0 * region
    # one wrong latent pixel costs 11x more on the mouth than elsewhere
    mouth_cost = video_loss(only_mouth_wrong, target, frame_weight, weights)
    other_cost = video_loss(other_pixel_wrong, target, frame_weight, weights)
    assert torch.allclose(mouth_cost, 11 * other_cost)


def test_mouth_region_covers_the_mouth_interior_and_little_else():
    cfg, _ = load_config(TOY)
    data = TalkingShapesDataset(cfg, num_chunks=6, size=1, seed=0, mouth_region=True)
    clip = data.clip(0)
    item = data[0]
    region = item["mouth"]
    h, w = cfg.latent_size
    assert region.shape == (h, w) and set(region.unique().tolist()) <= {0.0, 1.0}
    assert 0 < region.sum() < 0.1 * h * w  # a few latent pixels, not the face
    # every pixel where the mouth interior shows lies in a latent pixel of the region
    frames = clip.frames[: data.num_frames]
    shown = torch.from_numpy(mouth_interior_mask(frames).max(axis=0) > 0.3)
    stride = cfg.image_size[0] // h
    covered = region.repeat_interleave(stride, 0).repeat_interleave(stride, 1).bool()
    assert shown.any() and bool(covered[shown].all())
    assert mouth_region(frames * 0, (h, w)).sum() == 0  # no mouth, no region
