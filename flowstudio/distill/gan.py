"""DMD2's GAN term: a small discriminator head on the frozen teacher's features (an option of
``flowstudio distill``: ``gan_weight > 0``).

DMD2 (Yin et al. 2024, Sec. 4.3) adds a non-saturating GAN loss so the student can match *real* data
where the teacher itself is off. Here the head reads the token features the frozen teacher computes
at one block (``gan_layer``) for a noised clip: real clips (the toy's true renders of the bank's prompts)
against the student's samples, noised to the same level. The head is trained with the critic's
updates; the generator gets ``gan_weight * softplus(-D(student sample))`` through the frozen teacher.

Tokens of a pinned first frame (TI2V rows) carry the true first frame in real and generated clips
alike, so they are left out of the head's average.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class FeatureHead(torch.nn.Module):
    """Per-token logits ``(B, seq)`` from teacher features ``(B, seq, D)``, averaged over kept tokens."""

    def __init__(self, dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.LayerNorm(dim), torch.nn.Linear(dim, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, features: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.net(features.float()).squeeze(-1)
        if weights is None:
            return logits.mean(dim=1)
        return (logits * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class _Captured(Exception):
    """Raised by the hook once the block's output is taken: the rest of the forward is not needed."""


class TeacherFeatures:
    """The output of ``transformer.blocks[layer]`` for given inputs (gradients flow to the inputs)."""

    def __init__(self, transformer: torch.nn.Module, layer: int) -> None:
        blocks = transformer.blocks
        if not -len(blocks) <= layer < len(blocks):
            raise ValueError(f"gan_layer {layer} is outside the teacher's {len(blocks)} blocks")
        self.block = blocks[layer]

    def __call__(self, forward) -> torch.Tensor:
        """Run ``forward()`` (a teacher call) and return the block's output ``(B, seq, D)``."""
        taken: list[torch.Tensor] = []

        def hook(module, args, output):
            taken.append(output[0] if isinstance(output, tuple) else output)
            raise _Captured

        handle = self.block.register_forward_hook(hook)
        try:
            forward()
        except _Captured:
            pass
        finally:
            handle.remove()
        return taken[0]


def token_weights(mask: torch.Tensor, patch_size: tuple[int, int, int]) -> torch.Tensor:
    """``(B, seq)``: 1 on tokens of unpinned positions of a ``(B, 1, T, H, W)`` mask, 0 on pinned ones."""
    p_t, p_h, p_w = patch_size
    return mask[:, 0, ::p_t, ::p_h, ::p_w].flatten(1)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss of the head: real -> positive, generated -> negative."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's side: make the head call its samples real."""
    return F.softplus(-fake_logits).mean()
