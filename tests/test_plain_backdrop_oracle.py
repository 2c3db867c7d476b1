"""benchmarks/plain_backdrop_oracle.py: its sampler is `flowstudio generate`'s student sampler."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its siblings
    spec = importlib.util.spec_from_file_location(
        "plain_backdrop_oracle", BENCHMARKS / "plain_backdrop_oracle.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_with_nothing_replaced_it_samples_as_generate_and_fully_replaced_it_returns_the_sample(
    tiny_checkpoint,
):
    from flowstudio.core.stochastic import student_grid
    from flowstudio.pipeline import GenerationSettings, WanVideoPipeline

    script = _script()
    pipe = WanVideoPipeline.from_pretrained(tiny_checkpoint, device="cpu")
    settings = GenerationSettings(
        prompt="a red box", num_frames=5, height=32, width=32, steps=4, guidance_scale=1.0, seed=3,
        solver="dmd", shift=5.0,
    )  # fmt: skip
    expected = pipe.generate(settings, progress=False).latents
    shape = pipe.latent_shape(5, 32, 32)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    velocity = pipe.denoiser.bind(pipe.conditioning("a red box", guidance_scale=1.0))
    grid = student_grid(4, 5.0)
    mine = script.student_with_oracle(velocity, noise, None, grid, replaced=0, seed=3)
    torch.testing.assert_close(mine, expected, rtol=1e-5, atol=1e-5)
    sample = torch.randn(shape)
    torch.testing.assert_close(script.student_with_oracle(velocity, noise, sample, grid, 4, seed=3), sample)
    assert not torch.allclose(script.student_with_oracle(velocity, noise, sample, grid, 2, seed=3), sample)
