"""The hand-off between training phases: phase 4 (multimodal) starts from phase 2 (causal video).

Phase 2 trains the video tower alone, block-causal, on the audio-conditioned video loss
(``configs/dualforce/phase2_video.yaml``: structure tower with no layers, no bridge, no structure
losses). Phase 4 adds the structure tower and the bridge (``configs/dualforce/phase4_multimodal.yaml``,
``train.init_from`` = phase 2's ``final/`` folder). :func:`init_from_phase` carries the weights over:

* every tensor of the phase-2 checkpoint is copied into the tensor of the same name, which must have
  the same shape (the video tower, the audio module, the structure embed/head/time modules, which
  phase 2 builds but does not train);
* tensors phase 2 does not have (the structure tower's blocks, the bridge) keep the phase-4 model's
  own fresh initialisation (seeded by ``train.seed``);
* except the output projection of every new bridge attention that writes into the video stream
  (``bridge.layers.*.struct_to_video.o``), which starts at zero: the bridge is then an identity on the
  video path at step 0, so the first phase-4 forward predicts exactly phase 2's video velocities and
  the pre-trained tower is not disturbed by random structure features (the zero-initialised residual
  branch of ControlNet / adaLN-zero). The structure side (``video_to_struct``) keeps its default
  initialisation: the structure tower is new anyway, and it should hear the video from the start.

A phase-2 tensor with no place in the phase-4 model, or with another shape, is an error: it means the
two configs do not describe the same video tower.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from flowstudio.avatar.model.dualforce import DualForceModel, read_checkpoint_folder
from flowstudio.errors import CheckpointError

logger = logging.getLogger(__name__)

ZEROED_SUFFIX = ".struct_to_video.o."  # new bridge outputs into the video stream start at zero


@dataclass(frozen=True)
class HandOff:
    """What :func:`init_from_phase` did, tensor names per group (logged, and returned for tests)."""

    source: str
    carried: tuple[str, ...]
    new: tuple[str, ...]
    zeroed: tuple[str, ...]

    def summary(self) -> str:
        return (
            f"initialised from {self.source}: {len(self.carried)} tensors carried over, "
            f"{len(self.new)} new ({len(self.zeroed)} of them zeroed: the bridge's outputs into video)"
        )


def read_phase_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a previous phase's ``save_pretrained`` folder (config.json + model.safetensors)."""
    _, weights = read_checkpoint_folder(
        folder,
        what="train.init_from",
        fix="point it at the previous phase's final folder (`<output_dir>/final`, written when a "
        "`flowstudio avatar train` run finishes), or re-export it from its last checkpoint under "
        "`<output_dir>/checkpoints/`",
    )
    return weights


def init_from_phase(model: DualForceModel, folder: str | Path) -> HandOff:
    """Carry a previous phase's weights into ``model`` (in place) as the module docstring says."""
    source = read_phase_weights(folder)
    target = model.state_dict()
    unexpected = sorted(set(source) - set(target))
    mismatched = sorted(n for n in set(source) & set(target) if source[n].shape != target[n].shape)
    if unexpected or mismatched:
        details = [f"{n}: {tuple(source[n].shape)} vs {tuple(target[n].shape)}" for n in mismatched[:5]]
        raise CheckpointError(
            f"train.init_from {str(folder)!r} does not fit this model: "
            + (
                f"{len(unexpected)} tensor(s) it has no place for (e.g. {unexpected[:3]}); "
                if unexpected
                else ""
            )
            + (f"{len(mismatched)} of another shape ({'; '.join(details)}); " if mismatched else "")
            + "the phases must share the video tower's config (dim, layers, heads, in_channels, patch)"
        )
    new = sorted(set(target) - set(source))
    zeroed = [n for n in new if n.startswith("bridge.") and ZEROED_SUFFIX in n]
    with torch.no_grad():
        for name, tensor in source.items():
            target[name].copy_(tensor)
        for name in zeroed:
            target[name].zero_()
    hand_off = HandOff(str(folder), tuple(sorted(source)), tuple(new), tuple(zeroed))
    logger.info(hand_off.summary())
    return hand_off
