"""The toy-model recipes build the architecture of the model they claim to train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowstudio.errors import InputError
from flowstudio.models import TOY_MODEL, toy_model_available
from flowstudio.worlds.train_shapes import ShapesTrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "toy"

pytestmark = pytest.mark.skipif(not toy_model_available(), reason="packaged toy model absent")


def _shipped(component: str) -> dict:
    return json.loads((Path(TOY_MODEL) / component / "config.json").read_text())


def _architecture(config: ShapesTrainConfig) -> dict:
    """The config.json values a fresh run of ``config`` writes for each component."""
    return {
        "transformer": {
            "num_layers": config.num_layers,
            "num_attention_heads": config.num_attention_heads,
            "attention_head_dim": config.attention_head_dim,
            "ffn_dim": config.ffn_dim,
            "freq_dim": config.freq_dim,
            "text_dim": config.text_dim,
            "patch_size": [1, config.dit_patch_size, config.dit_patch_size],
        },
        "vae": {
            "base_dim": config.vae_base_dim,
            "decoder_base_dim": config.vae_decoder_base_dim,
            "num_res_blocks": config.vae_num_res_blocks,
        },
        "text_encoder": {"num_layers": config.text_encoder_layers, "num_heads": config.text_encoder_heads},
    }


@pytest.mark.parametrize("recipe", ["shapes_gpu.yaml", "shapes_cpu_deep.yaml", "shapes_cpu_v6b.yaml"])
def test_the_recipe_builds_the_shipped_models_architecture(recipe: str) -> None:
    """``shapes_gpu.yaml`` retrains the shipped model on a GPU; ``shapes_cpu_deep.yaml`` made v5 and
    ``shapes_cpu_v6b.yaml`` trained it on to the shipped v6b."""
    wanted = _architecture(ShapesTrainConfig.from_yaml(CONFIGS / recipe))
    for component, fields in wanted.items():
        shipped = _shipped(component)
        assert {k: shipped[k] for k in fields} == fields, component


def test_the_shipped_model_says_which_recipe_made_it() -> None:
    summary = json.loads((Path(TOY_MODEL) / "training_summary.json").read_text())
    assert "shapes_cpu_v6b.yaml" in summary["lineage"]  # v6b: v5's transformer trained on
    assert "shapes_cpu_deep.yaml" in summary["transformer_stage_v5"]["lineage"]  # v5: made from v3's VAE
    assert summary["config"]["num_layers"] == _shipped("transformer")["num_layers"]


def test_a_recipe_takes_the_keys_it_leaves_out_from_its_base(tmp_path: Path) -> None:
    import dataclasses

    deep = ShapesTrainConfig.from_yaml(CONFIGS / "shapes_cpu_deep.yaml")
    continued = ShapesTrainConfig.from_yaml(CONFIGS / "shapes_cpu_deep_continue.yaml")
    assert continued.dit_steps == 24000 and dataclasses.replace(continued, dit_steps=deep.dit_steps) == deep
    (tmp_path / "a.yaml").write_text("base: b.yaml\ndit_steps: 3\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(InputError, match="loops back"):
        ShapesTrainConfig.from_yaml(tmp_path / "a.yaml")
    (tmp_path / "d.yaml").write_text("dit_steps: 3\n")
    (tmp_path / "c.yaml").write_text("base: d.yaml\nnot_a_key: 1\n")
    with pytest.raises(InputError, match="unknown training keys"):
        ShapesTrainConfig.from_yaml(tmp_path / "c.yaml")


def test_a_recipe_file_that_is_missing_broken_or_not_a_mapping_is_refused(tmp_path: Path) -> None:
    from flowstudio.recipes import deep, read_recipe

    with pytest.raises(InputError, match="not found; see here"):
        read_recipe(tmp_path / "none.yaml", hint="see here")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(InputError, match="top level must be a mapping"):
        read_recipe(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(InputError, match="not valid YAML"):
        read_recipe(tmp_path / "bad.yaml")
    (tmp_path / "base.yaml").write_text("train: {steps: 3, lr: 0.1}\nseed: 1\n")
    (tmp_path / "run.yaml").write_text("base: base.yaml\ntrain: {steps: 5}\n")
    assert read_recipe(tmp_path / "run.yaml", deep) == {"train": {"steps": 5, "lr": 0.1}, "seed": 1}
    assert read_recipe(tmp_path / "run.yaml") == {"train": {"steps": 5}, "seed": 1}


@pytest.mark.parametrize(
    ("recipe", "trains_the_vae_on"),
    [
        ("shapes_cpu_deep_continue.yaml", False),
        ("shapes_cpu_vae_continue.yaml", True),
        ("shapes_cpu_v7.yaml", True),
    ],
)
def test_the_continuation_recipes_fit_the_shipped_model(
    recipe: str, trains_the_vae_on: bool, tmp_path: Path
) -> None:
    """The recipes that start from the shipped model pass its configuration checks: the VAE is taken as
    finished, or trained on from its step with its short-crop prefix kept."""
    from flowstudio.worlds.train_shapes import take_vae_from

    config = ShapesTrainConfig.from_yaml(CONFIGS / recipe)
    step = take_vae_from(Path(TOY_MODEL), config, tmp_path / "init", tmp_path, replace_init=False)
    shipped_steps = json.loads((Path(TOY_MODEL) / "training_summary.json").read_text())["config"]["vae_steps"]
    assert step == (shipped_steps if trains_the_vae_on else None)
