"""A toy transformer with a (1, 1, 1) patch (docs/findings_toy_model.md: the token grid as a lever for shape):
built, trained-config-selectable, and run by the pipeline and the editing engine like the (1, 2, 2) one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowstudio.errors import InputError
from flowstudio.models.factory import build_tiny_checkpoint
from flowstudio.pipeline import GenerationSettings, WanVideoPipeline
from flowstudio.worlds.train_shapes import TRANSFORMER_FIELDS, ShapesTrainConfig


@pytest.fixture(scope="module")
def patch1(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "patch1", seed=0, patch_size=1)


def test_a_patch_1_checkpoint_has_four_times_the_tokens_and_generates(patch1, tiny_checkpoint):
    config = json.loads((patch1 / "transformer" / "config.json").read_text())
    assert config["patch_size"] == [1, 1, 1]
    assert json.loads((tiny_checkpoint / "transformer" / "config.json").read_text())["patch_size"] == [
        1,
        2,
        2,
    ]
    from flowstudio.weights.check import check_checkpoint

    report = check_checkpoint(patch1)
    assert report.ok, "a (1, 1, 1) toy transformer loads"
    assert any("toy variant" in w.detail for w in report.warnings), "and the check says it is not Wan2.2's"
    pipe = WanVideoPipeline.from_pretrained(patch1, device="cpu")
    assert pipe.size_multiple == 16, "a size need only be a multiple of the VAE's 16 with a 1x1 patch"
    out = pipe.generate(
        GenerationSettings(prompt="a red ball", num_frames=5, height=32, width=48, steps=2), progress=False
    )
    assert out.frames.shape == (5, 32, 48, 3) and out.latents.shape == (1, 48, 2, 2, 3)


def test_the_engine_edits_with_a_patch_1_model_and_a_mask(patch1):
    from flowstudio.edit import edit

    pipe = WanVideoPipeline.from_pretrained(patch1, device="cpu")
    source = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    mask = np.zeros((5, 32, 32), np.uint8)
    mask[:, 8:24, 8:24] = 255
    result = edit(
        source, source_prompt="a red ball", target_prompt="a blue ball", model=pipe, mask=mask, steps=2
    )
    assert result.frames.shape == source.shape


def test_the_training_config_selects_the_patch_and_refuses_others():
    assert ShapesTrainConfig().dit_patch_size == 2 and "dit_patch_size" in TRANSFORMER_FIELDS
    assert ShapesTrainConfig(dit_patch_size=1).dit_patch_size == 1
    with pytest.raises(InputError, match="dit_patch_size must be 1 or 2"):
        ShapesTrainConfig(dit_patch_size=3)
    with pytest.raises(InputError, match="patch_size must be a whole number"):
        build_tiny_checkpoint("/tmp/never-written", patch_size=0)


def test_a_tiny_training_run_with_a_patch_1_transformer_exports_it(tmp_path):
    from dataclasses import replace

    from flowstudio.worlds.train_shapes import train_shapes
    from tests.test_train_shapes import TINY

    result = train_shapes(tmp_path / "run", replace(TINY, dit_patch_size=1), device="cpu", progress=False)
    assert result.finished and result.model_dir == tmp_path / "run" / "model"
    config = json.loads((result.model_dir / "transformer" / "config.json").read_text())
    assert config["patch_size"] == [1, 1, 1]
    pipe = WanVideoPipeline.from_pretrained(result.model_dir, device="cpu")
    assert tuple(pipe.components.transformer.config.patch_size) == (1, 1, 1)
