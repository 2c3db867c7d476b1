"""DualForce loss terms as pure, documented functions; :func:`total_loss` weights them by config.

All terms are means over the frames whose weight is 1 (sink frames have weight 0):

* ``L_video  = sum_f w_f ||v_pred - v||^2 / (sum_f w_f * C H W)``             flow-matching velocity MSE
  (optionally with per-pixel weights, e.g. on the mouth region)
* ``L_struct = same on the structure velocity``
* ``L_flame  = 3D keypoint / pose consistency of the *predicted clean* structure
  ``x0 = x_sigma - sigma v_pred`` against the ground truth: L2 over keypoints plus L1 over pose,
  translation and scale (the LivePortrait layout of :class:`StructureLayout`). Zero at perfect
  prediction; it weights the geometry rather than raw channels.
* ``L_lip_sync`` = a pluggable scorer ``scorer(video_x0, audio) -> (B,)`` *distance* (lower is
  better, e.g. ``1 - SyncNet confidence``); the mean over the batch. ``None`` scorer -> 0.

Every function returns a 0-dim tensor and is differentiable in the prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from flowstudio.avatar.model.config import LossConfig, StructureLayout

LipSyncScorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``scorer(video_x0 (B, C, F, H, W), audio (B, A, C_a)) -> (B,)`` sync distance, lower is better."""


def _weighted_mean(err: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``err`` ``(B, N)`` per-frame errors, ``weight`` ``(B, N)`` -> weighted mean."""
    return (err * weight).sum() / weight.sum().clamp_min(1.0)


def video_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, pixel_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """``L_video``: velocity MSE over ``(B, C, F, H, W)`` with per-frame ``weight`` ``(B, F)``.

    ``pixel_weight`` ``(B, H, W)`` (optional) weights latent pixels within each frame (a weighted mean,
    so the loss keeps its scale): the toy's mouth is ~0.5% of the frame, and an unweighted MSE gives
    the model almost no reason to draw it right (``train.mouth_weight``)."""
    err = (pred.float() - target.float()).pow(2).mean(dim=1)  # (B, F, H, W)
    if pixel_weight is None:
        per_frame = err.mean(dim=(2, 3))
    else:
        w = pixel_weight.float()[:, None]
        per_frame = (err * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3)).clamp_min(1e-8)
    return _weighted_mean(per_frame, weight)


def struct_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``L_struct``: velocity MSE over ``(B, S, C_s)`` with per-frame ``weight`` ``(B, S)``."""
    return _weighted_mean((pred.float() - target.float()).pow(2).mean(dim=2), weight)


def flame_loss(
    pred_x0: torch.Tensor, true_x0: torch.Tensor, weight: torch.Tensor, layout: StructureLayout
) -> torch.Tensor:
    """``L_flame``: keypoint L2 (mean Euclidean distance of the ``K`` 3D keypoints) + pose/translation/
    scale L1, on clean structure ``(B, S, 7 + 3K)``."""
    pose_err = (pred_x0[..., :7].float() - true_x0[..., :7].float()).abs().mean(dim=2)
    kp_pred = pred_x0[..., 7:].float().unflatten(-1, (layout.num_keypoints, 3))
    kp_true = true_x0[..., 7:].float().unflatten(-1, (layout.num_keypoints, 3))
    kp_err = (kp_pred - kp_true).pow(2).sum(-1).add(1e-12).sqrt().mean(-1)
    return _weighted_mean(pose_err + kp_err, weight)


def lip_sync_loss(scorer: LipSyncScorer | None, video_x0: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """``L_lip_sync``: mean of ``scorer(video_x0, audio)``; 0 when no scorer is plugged in."""
    if scorer is None:
        return video_x0.new_zeros((), dtype=torch.float32)
    return scorer(video_x0, audio).float().mean()


@dataclass
class LossTerms:
    """Each weighted term and their sum (``total``); values are 0-dim tensors."""

    total: torch.Tensor
    video: torch.Tensor
    struct: torch.Tensor
    flame: torch.Tensor
    lip_sync: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.__dict__.items()}


def total_loss(
    weights: LossConfig,
    *,
    video: torch.Tensor,
    struct: torch.Tensor,
    flame: torch.Tensor,
    lip_sync: torch.Tensor,
) -> LossTerms:
    """``w_video L_video + w_struct L_struct + w_flame L_flame + w_lip L_lip_sync``."""
    total = (
        weights.video * video + weights.struct * struct + weights.flame * flame + weights.lip_sync * lip_sync
    )
    return LossTerms(total, video, struct, flame, lip_sync)
