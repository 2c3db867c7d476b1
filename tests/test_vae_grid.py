"""``benchmarks/vae_grid.py``: the sources it accepts, what it refuses, and the picture it draws."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "vae_grid.py"
spec = importlib.util.spec_from_file_location("vae_grid", SCRIPT)
vae_grid = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vae_grid)
MODEL = Path(__file__).resolve().parent.parent / "flowstudio" / "assets" / "toy-shapes"


def test_a_source_is_label_equals_path():
    assert vae_grid.parse_source("v3=some/folder") == ("v3", Path("some/folder"))
    for bad in ("some/folder", "=x", "v3="):
        with pytest.raises(argparse.ArgumentTypeError, match="LABEL=PATH"):
            vae_grid.parse_source(bad)


def test_a_folder_that_is_neither_a_model_nor_a_run_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="neither a model folder"):
        vae_grid.vae_roundtrip(tmp_path)


@pytest.mark.skipif(not (MODEL / "vae" / "config.json").exists(), reason="packaged toy model missing")
def test_the_shipped_vae_reconstructs_a_held_out_clip_and_the_grid_is_drawn(tmp_path):
    spec0 = vae_grid.toy_quality.held_out(0)[0]
    clip = vae_grid.render_clip(spec0)[:5]  # 4k+1 frames: one latent chunk after the first frame
    recon = vae_grid.vae_roundtrip(MODEL)(clip)
    assert recon.shape == clip.shape and recon.dtype == np.uint8
    assert vae_grid.toy_quality.psnr(recon, clip) > 18  # a reconstruction, not noise
    out = tmp_path / "grid.png"
    vae_grid.draw([clip], [spec0.shape], {"shipped": [recon]}, [0, 4], out)
    assert out.stat().st_size > 10_000
