"""DMD's paired regression term: the student's predictions pulled to the teacher's many-step samples.

Reference: Yin et al., "One-step Diffusion with Distribution Matching Distillation" (DMD, CVPR 2024),
Sec. 3.3: a set of (noise, teacher ODE output) pairs made once before training, and a regression
loss between the one-step generator's output for the noise and the teacher's. DMD2 dropped it (the
pairs are costly at scale); here it is an option for the case that the distribution-matching term
alone loses: a mode the teacher draws with many steps that the student draws otherwise (on the toy,
the plain backdrop, see docs/guide_distill.md, "The regression term").

A few-step student samples stochastically: each step predicts ``x0`` and re-noises it with fresh noise
to the next level. So the term is applied at every student level, with the input the sampler would
give a student whose predictions were the teacher's sample:

* at the first level (``sigma = 1``) the pair's own noise (DMD's coupling: the one input that
  determines the teacher's sample);
* at a later level ``sigma_k`` the teacher's sample re-noised to ``sigma_k`` with fresh noise (the
  form of the sampler's input there).

Why not the first level alone, as DMD's one-step generator: on the toy, the plain-weighted 4-step
student given the teacher's sample as its first (or first two) predictions still draws the plain
backdrop mottled, i.e. its later steps redraw it (benchmarks/results/plain_backdrop_oracle.md). DMD used
LPIPS on decoded images; this term is the mean squared error on the latents (no decoder pass).

Pairs are text-to-video (no pinned first frame), from the prompt bank's prompts that hold one of
``regression_phrases`` (all prompts when none are named), cycled in bank order, each with its own
noise seeded by ``(seed, pair index)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from flowstudio.distill.prompts import holding

logger = logging.getLogger(__name__)

PAIR_STREAM = 29  # the pairs' noise stream, apart from the batches' (17)


@dataclass
class RegressionPairs:
    """``rows`` ``(N,)`` prompt-bank indices; ``noise`` and ``target`` ``(N, C, T, H, W)`` float32: each
    pair's starting noise and the teacher's sample from it; ``settings`` how the targets were made."""

    rows: torch.Tensor
    noise: torch.Tensor
    target: torch.Tensor
    settings: dict

    def __len__(self) -> int:
        return int(self.rows.numel())

    def save(self, path: Path) -> None:
        from flowstudio.train import atomic_save

        atomic_save(self.__dict__, path)

    @classmethod
    def load(cls, path: Path) -> RegressionPairs:
        return cls(**torch.load(path, weights_only=False))


def pair_rows(prompts: list[str], phrases: list[str] | None, count: int) -> torch.Tensor:
    """The bank rows of ``count`` pairs: the prompts holding a phrase (any prompt when ``phrases`` is
    None), cycled in bank order. A phrase no prompt holds is an error (a typo would silently train on
    nothing)."""
    if phrases:
        hits = [holding(prompts, phrase, "regression_phrases") for phrase in phrases]
        chosen = [i for i in range(len(prompts)) if any(hit[i] for hit in hits)]
    else:
        chosen = list(range(len(prompts)))
    return torch.tensor([chosen[i % len(chosen)] for i in range(count)], dtype=torch.long)


def pair_noise(seed: int, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Pair ``index``'s noise ``shape`` (one clip, no batch axis): a function of ``(seed, index)`` alone."""
    state = int(np.random.SeedSequence([seed, PAIR_STREAM, index]).generate_state(1)[0])
    return torch.randn(shape, generator=torch.Generator().manual_seed(state))


@torch.no_grad()
def build_pairs(
    pipeline,
    embeds: torch.Tensor,
    negative: torch.Tensor,
    rows: torch.Tensor,
    latent_shape: tuple[int, ...],
    *,
    seed: int,
    steps: int,
    solver: str,
    guidance_scale: float,
    shift: float,
    progress: bool = True,
) -> RegressionPairs:
    """The teacher's sample for each pair: ``pipeline.solve`` from the pair's noise with classifier-free
    guidance, the solver's steps and the run's shift, timesteps fed as ``generate`` feeds them."""
    from flowstudio.denoiser import Conditioning
    from flowstudio.pipeline import GenerationSettings

    integer = GenerationSettings(prompt="-", solver=solver).integer_timesteps
    noises, targets = [], []
    for index, row in enumerate(tqdm(rows.tolist(), desc="regression pairs", disable=not progress)):
        noise = pair_noise(seed, index, tuple(latent_shape[1:]))[None]
        cond = Conditioning(
            prompt_embeds=embeds[row : row + 1].to(pipeline.device),
            negative_embeds=negative.to(pipeline.device) if guidance_scale != 1.0 else None,
            guidance_scale=guidance_scale,
            integer_timesteps=integer,
        )
        state = pipeline.solve(noise.to(pipeline.device), cond, steps=steps, shift=shift, solver=solver)
        noises.append(noise[0])
        targets.append(state.x[0].float().cpu())
    settings = {"steps": steps, "solver": solver, "guidance_scale": guidance_scale, "shift": shift,
                "seed": seed, "integer_timesteps": integer}  # fmt: skip
    return RegressionPairs(rows, torch.stack(noises), torch.stack(targets), settings)


def regression_loss(x0: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the student's ``x0`` and the teacher's sample, in float32,
    per row then over rows (every row weighs the same)."""
    error = (x0.float() - target.float()).pow(2)
    return error.mean(dim=tuple(range(1, error.dim()))).mean()
