"""The lip-sync loss through the analytic mouth reader in torch (``train.lip_sync_scorer: mouth_reader``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flowstudio.avatar.model.codec import ToyCodec
from flowstudio.avatar.model.config import load_config
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.avatar.training.losses import lip_sync_loss
from flowstudio.avatar.training.mouth_sync import (
    MouthReaderSync,
    decode_toy_latents,
    mouth_area_torch,
    mouth_interior_mask_torch,
    read_mouth_opening_torch,
)
from flowstudio.avatar.training.toy_data import TalkingShapesDataset
from flowstudio.avatar.training.train import TrainConfig, training_step
from flowstudio.errors import InputError
from flowstudio.worlds.faces import mouth_interior_mask, read_mouth_opening

TOY = Path(__file__).parents[1] / "configs" / "dualforce" / "toy.yaml"


@pytest.fixture(scope="module")
def toy():
    cfg, _ = load_config(TOY)
    data = TalkingShapesDataset(cfg, num_chunks=6, size=7, seed=0)  # items 0 and 6 open the mouth
    return cfg, data


def test_torch_mask_equals_numpy_mask_on_rendered_frames(toy):
    _, data = toy
    frames = data.clip(0).frames[: data.num_frames]
    rgb = torch.from_numpy(frames).float().permute(0, 3, 1, 2)
    ours = mouth_interior_mask_torch(rgb).numpy()
    assert np.allclose(ours, mouth_interior_mask(frames), atol=1e-5)
    assert mouth_interior_mask(frames).max() > 0.5  # the clip shows its mouth interior


@pytest.mark.parametrize("stride", [1, 4])
def test_torch_reader_equals_numpy_reader_on_decoded_frames(toy, stride):
    _, data = toy
    frames = data.clip(0).frames[: data.num_frames]
    codec = ToyCodec(stride)
    latents = codec.encode_frames(frames)
    ours = read_mouth_opening_torch(latents, stride)[0].numpy()
    theirs = read_mouth_opening(codec.decode(latents))
    assert theirs.max() > 0.01 and np.abs(ours - theirs).max() < 2e-3
    # and the area on the decoded frames
    area = mouth_area_torch(latents)[0].numpy()
    assert np.allclose(area, mouth_interior_mask(codec.decode(latents)).mean(axis=(1, 2)) * 100, atol=0.02)
    # the decoding is the codec's, up to its rounding
    decoded = decode_toy_latents(latents)[0].permute(0, 2, 3, 1)
    assert (
        np.abs(
            decoded.repeat_interleave(stride, 1).repeat_interleave(stride, 2).numpy() - codec.decode(latents)
        ).max()
        <= 0.5 + 1e-4
    )


def _noised_everywhere_low(video):
    b, _, f = video.shape[:3]
    weight = torch.ones(b, f)
    weight[:, 0] = 0.0  # sink
    return weight, torch.full((b, f), 0.3)


def test_loss_is_zero_at_the_truth_and_positive_for_a_closed_mouth(toy):
    _, data = toy
    video = data.batch([0, 6])["video"]
    weight, sigma = _noised_everywhere_low(video)
    scorer = MouthReaderSync(video, weight, sigma)
    assert torch.equal(scorer(video, torch.zeros(2, 1, 1)), torch.zeros(2))
    # the truth's mouth region painted over with its lip colour: a closed mouth against an open truth
    closed = video.clone()
    interior = mouth_area_torch(video, None) > 0  # (B, 4F) frames showing the interior
    assert interior.any()
    rgb = decode_toy_latents(video)
    mask = mouth_interior_mask_torch(rgb, None) > 0  # (B, T, h, w)
    lip = torch.tensor([190.0, 82.0, 92.0]) / 127.5 - 1.0
    b, c, f, h, w = video.shape
    x = closed.permute(0, 2, 1, 3, 4).reshape(b, 4 * f, 3, h, w)
    x = torch.where(mask[:, :, None], lip.view(1, 1, 3, 1, 1), x)
    closed = x.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)
    loss = scorer(closed, torch.zeros(2, 1, 1))
    assert (loss > 0).all()
    # frames at high noise or with weight 0 are not scored
    assert torch.equal(MouthReaderSync(video, weight, torch.ones_like(sigma))(closed, None), torch.zeros(2))
    assert torch.equal(MouthReaderSync(video, torch.zeros_like(weight), sigma)(closed, None), torch.zeros(2))
    # the per-pixel form: 0 at the truth, > 0 closed, and also > 0 for the right area in the wrong place
    per_pixel = MouthReaderSync(video, weight, sigma, per_pixel=True)
    assert torch.equal(per_pixel(video, None), torch.zeros(2))
    assert (per_pixel(closed, None) > 0).all()
    moved = torch.roll(video, shifts=3, dims=-1)  # the whole picture 3 latent pixels to the right
    assert (per_pixel(moved, None) > 0).all() and (scorer(moved, None) < 1e-3).all()
    # the surrogate gradient points towards opening the closed mouth (its area goes up)
    closed.requires_grad_(True)
    lip_sync_loss(scorer, closed, torch.zeros(2, 1, 1)).backward()
    step = closed - 0.05 * closed.grad / closed.grad.abs().max()
    assert mouth_area_torch(step.detach(), None).sum() > mouth_area_torch(closed.detach(), None).sum()


def test_gradients_reach_the_model_and_the_term_is_off_by_default(toy):
    cfg, data = toy
    cfg = cfg.replace({"loss": {"lip_sync": 1.0}})
    torch.manual_seed(0)
    model = DualForceModel(cfg)
    batch = data.batch([0, 6])
    terms = training_step(
        model,
        batch,
        data.layout,
        torch.Generator().manual_seed(0),
        cfg,
        lip_sync_scorer="mouth_reader",
        lip_sync_max_sigma=1.0,
    )
    assert float(terms.lip_sync.detach()) > 0
    terms.lip_sync.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    # the target side (the truth's decoding through the fixed, parameter-free codec) takes no gradient
    assert not any(isinstance(v, torch.Tensor) for v in vars(ToyCodec(4)).values())
    truth = batch["video"].clone().requires_grad_(True)
    weight, sigma = _noised_everywhere_low(truth)
    pred = torch.zeros_like(truth, requires_grad=True)
    MouthReaderSync(truth, weight, sigma)(pred, None).sum().backward()
    assert truth.grad is None and pred.grad is not None
    off = training_step(
        model, {k: v.detach() for k, v in batch.items()}, data.layout, torch.Generator().manual_seed(0), cfg
    )
    assert float(off.lip_sync) == 0.0


def test_config_switch_is_validated():
    assert TrainConfig.from_dict({}).lip_sync_scorer is None
    assert TrainConfig.from_dict({"lip_sync_scorer": "mouth_reader"}).lip_sync_scorer == "mouth_reader"
    with pytest.raises(InputError):
        TrainConfig.from_dict({"lip_sync_scorer": "syncnet"})
    assert TrainConfig.from_dict({"lip_sync_scorer": "mouth_mask"}).lip_sync_scorer == "mouth_mask"
