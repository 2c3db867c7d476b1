"""The packaged toy model's VAE keeps what the readers see (issue 13): a fast check on 5 held-out clips.

The full measurement is ``benchmarks/toy_quality.py`` (bars: whole-clip PSNR >= 30 dB, readers on the
reconstructions within 3 points of the true renders).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowstudio.models import TOY_MODEL, toy_model_available
from flowstudio.worlds.readers import read_color
from flowstudio.worlds.shapes import random_spec, render_clip

HELD_OUT_SEED = 10_000  # the stream of benchmarks/toy_quality.py, never drawn by training

pytestmark = pytest.mark.skipif(not toy_model_available(), reason="the packaged toy model is absent")


@pytest.fixture(scope="module")
def reconstructions():
    from flowstudio.pipeline import WanVideoPipeline

    pipe = WanVideoPipeline.from_pretrained(TOY_MODEL, device="cpu")
    rows = []
    with torch.no_grad():
        for i in range(5):
            spec = random_spec(np.random.default_rng([HELD_OUT_SEED, i]))
            clip = render_clip(spec)
            rows.append((spec, clip, pipe.decode_latents(pipe.encode_video(clip))))
    return rows


def test_readers_see_the_true_colour_of_every_clip(reconstructions):
    """A reference for the next test: the reader itself is right on the true renders."""
    assert [read_color(clip)[0] for _, clip, _ in reconstructions] == [s.color for s, _, _ in reconstructions]


def test_the_vae_keeps_the_colour_of_five_held_out_clips(reconstructions):
    read = [read_color(recon)[0] for _, _, recon in reconstructions]
    assert read == [spec.color for spec, _, _ in reconstructions], "colour read on VAE reconstructions"
