"""flowstudio.edit.edit(...), presets, the edit / edit-memory commands and the memory estimate."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import typer
from edit_fixtures import gradient_clip, one_thread
from typer.testing import CliRunner

from flowstudio.edit import PRESETS, EditSettings, edit, resolve_settings
from flowstudio.edit.cli import edit_command, estimate_memory_command
from flowstudio.edit.memory import GB, estimate_memory, parameter_count
from flowstudio.errors import InputError
from flowstudio.pipeline import WanVideoPipeline
from flowstudio.video import write_video
from flowstudio.weights import WAN22_TI2V_5B_CONFIGS

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)
runner = CliRunner()


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint) -> WanVideoPipeline:
    return WanVideoPipeline.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def source_mp4(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("edit") / "source.mp4"
    write_video(path, gradient_clip(5, 32, 64), fps=8)
    return str(path)


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """A local app with the two commands, as flowstudio/cli.py registers them."""
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("edit")(edit_command)
    app.command("edit-memory")(estimate_memory_command)
    return app


def _frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def test_edit_writes_video_side_by_side_and_settings(pipe, source_mp4, tmp_path):
    out = tmp_path / "out" / "edited.mp4"
    r = edit(
        source_mp4,
        source_prompt="a red ball",
        target_prompt="a blue ball",
        model=pipe,
        steps=2,
        method="flowedit",
        out=out,
    )
    assert r.frames.shape == (5, 32, 64, 3) and r.side_by_side().shape == (5, 32, 128, 3)
    side = tmp_path / "out" / "edited_side_by_side.mp4"
    assert _frames(out) == 5 and _frames(side) == 5
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["settings"]["method"] == "flowedit" and record["settings"]["steps"] == 2
    assert (
        record["settings"]["target_prompt"] == "a blue ball" and record["model_calls"] == r.model_calls == 2
    )


def test_edit_normalises_the_source_and_a_mask_of_its_size(pipe):
    clip = gradient_clip(6, 40, 70)  # -> 5 frames (trim), 32x64 (resize)
    mask = np.zeros((40, 70), np.uint8)
    r = edit(clip, source_prompt="a red ball", target_prompt="a blue ball", model=pipe, steps=2, mask=mask)
    assert r.frames.shape == (5, 32, 64, 3) and r.mask is not None and float(r.mask.sum()) == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"source_prompt": None}, "source_prompt is missing"),
        ({"target_prompt": "  "}, "target_prompt is missing"),
        ({"preset": "sepia"}, "unknown preset 'sepia'; choose one of product-replace"),
        ({"method": "p2p"}, "unknown method 'p2p'; choose one of inversion, flowedit, rf-solver, fireflow"),
        ({"mask": np.zeros((10, 10), np.uint8)}, r"mask is 10x10 \(WxH\) but the video is 64x32"),
        ({"box": (0, 0, 100, 10)}, "box"),
        ({"first_frame": "image"}, "needs target_image"),
        ({"stepz": 3}, "unknown edit option"),
        ({"inversion_solver": "heun"}, "unknown inversion_solver 'heun'"),
    ],
)
def test_bad_input_gets_a_clear_error(pipe, options, message):
    kwargs = {"source_prompt": "a red ball", "target_prompt": "a blue ball", "steps": 2} | options
    with pytest.raises(InputError, match=message):
        edit(gradient_clip(), model=pipe, **kwargs)


@pytest.fixture
def validated(monkeypatch):
    """Every preset filled in as if a benchmark run had qualified the former candidate configuration."""
    from dataclasses import replace

    from flowstudio.edit import AttentionShareConfig, BlendConfig, FlowEditConfig

    values = {
        "method": "flowedit",
        "steps": 10,
        "source_guidance": 1.5,
        "target_guidance": 5.0,
        "flowedit": FlowEditConfig(n_max=7, n_min=0, n_avg=1),
        "attention_share": AttentionShareConfig(mode="concat", start=0.0, end=0.5),
        "blend": BlendConfig(pixel_composite=True),
    }
    for name in list(PRESETS):
        monkeypatch.setitem(PRESETS, name, replace(PRESETS[name], values=dict(values), evidence="test"))
    return values


def test_presets_carry_their_evidence_and_product_colour_and_background_are_validated_on_the_toy_model():
    assert set(PRESETS) == {"product-replace", "background", "style", "color", "material"}
    root = Path(__file__).resolve().parent.parent
    for name, preset in PRESETS.items():
        assert preset.name == name and "toy-shapes" in preset.model
        assert (root / preset.results).is_file(), f"{name}: its evidence {preset.results} is not in the repo"
        assert "pairs" in preset.evidence
        assert preset.available == (name in ("product-replace", "color", "background")), name
    assert PRESETS["background"].results == "benchmarks/results/edit_toy_background_subject_v6b/edit_toy.md"
    assert "v6b" in PRESETS["color"].model  # chosen on the shipped model
    # the three validated presets meet their bars on fresh pairs
    assert all(PRESETS[name].below_bar is None for name in ("color", "background", "product-replace"))
    # the product preset pastes the edit's new product onto the source's scene, old product painted out,
    # with the settings tuned on fresh pairs (old product not grown, new product's cut eroded 3 px)
    blend = PRESETS["product-replace"].values["blend"]
    assert (blend.composite_mask, blend.swap_plate_grow, blend.swap_erode) == ("swap", 0, 3)
    assert blend.swap_backdrop_tolerance == 0.12, "a new ring's hole shows the scene (stop 56)"
    assert blend.swap_plate_check == 1.6, "what is painted out is checked by its colours (stop 57)"
    # the background preset pastes the source's subject back (GrabCut from the frame's border), kept only
    # where the edited frame's own cut confirms it within 4 px (a busy backdrop taken along goes to the edit)
    blend = PRESETS["background"].values["blend"]
    assert (blend.composite_mask, blend.subject_confirm_grow) == ("subject", 4)
    # the colour preset cuts the change region on the source without a sure core (the soft GrabCut cut)
    blend = PRESETS["color"].values["blend"]
    assert blend.change_refine == "source" and blend.change_refine_sure_core is False


def test_a_preset_below_its_bar_warns_when_used(caplog, monkeypatch):
    import dataclasses

    from flowstudio.edit.presets import preset_values

    below = dataclasses.replace(PRESETS["product-replace"], below_bar="keep PSNR 22.4 dB (bar 30 dB)")
    monkeypatch.setitem(PRESETS, "product-replace", below)
    with caplog.at_level("WARNING", logger="flowstudio.edit.presets"):
        values = preset_values("product-replace")
    assert values["method"] == "flowedit" and values["preset"] == "product-replace"
    assert "below its quality bar" in caplog.text and "keep PSNR 22.4 dB (bar 30 dB)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="flowstudio.edit.presets"):
        preset_values("background")
    assert "below its quality bar" not in caplog.text


@pytest.mark.parametrize("name", ["material", "style"])
def test_an_unvalidated_preset_refuses_with_one_actionable_line(pipe, name):
    with pytest.raises(InputError) as err:
        edit(gradient_clip(), source_prompt="a", target_prompt="b", model=pipe, preset=name)
    message = str(err.value)
    assert "\n" not in message and f"preset {name!r} is not validated on this model" in message
    assert "benchmarks/results/edit_toy.md" in message and "pass explicit options" in message


def test_presets_resolve_and_explicit_options_win(validated):
    for name in PRESETS:
        s = resolve_settings(source_prompt="a", target_prompt="b", preset=name)
        assert isinstance(s, EditSettings) and s.preset == name
    s = resolve_settings(source_prompt="a", target_prompt="b", preset="color", steps=7, method="inversion")
    assert s.steps == 7 and s.method == "inversion" and s.blend is not None  # the rest from the preset


@pytest.mark.parametrize("command", ["edit", "edit-memory"])
def test_cli_help(app, command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output, result.output


def test_cli_edit(app, tiny_checkpoint, source_mp4, tmp_path):
    out = tmp_path / "cli.mp4"
    result = runner.invoke(
        app,
        [
            "edit",
            source_mp4,
            "--model",
            str(tiny_checkpoint),
            "--source-prompt",
            "a red ball",
            "--target-prompt",
            "a blue ball",
            "--method",
            "fireflow",
            "--steps",
            "2",
            "--inject",
            "0.5",
            "--share-kv",
            "concat",
            "--box",
            "0,0,32,32",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["settings"]["method"] == "fireflow" and record["settings"]["injection"]["strength"] == 0.5
    assert record["settings"]["attention_share"]["mode"] == "concat"
    assert record["info"]["mask"] == "box (0, 0, 32, 32)"
    assert _frames(tmp_path / "cli_side_by_side.mp4") == 5


def test_cli_edit_keep_unchanged(app, tiny_checkpoint, source_mp4, tmp_path):
    out = tmp_path / "keep.mp4"
    args = [
        "edit",
        source_mp4,
        "--model",
        str(tiny_checkpoint),
        "--source-prompt",
        "a red ball",
        "--target-prompt",
        "a blue ball",
        "--steps",
        "2",
        "--keep-unchanged",
        "--change-threshold",
        "0.3",
        "--change-largest",
        "--change-refine",
        "source",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(out.with_suffix(".json").read_text())
    blend = record["settings"]["blend"]
    assert blend["composite_mask"] == "change" and blend["strength"] == 0.0
    assert blend["change_threshold"] == 0.3 and blend["change_largest"] is True
    assert blend["change_refine"] == "source"
    assert 0.0 <= record["info"]["changed_fraction"] <= 1.0 and "auto_mask_fraction" not in record["info"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source-prompt", "a red ball"], "--target-prompt is missing"),
        (["--source-prompt", "a", "--target-prompt", "b", "--preset", "sepia"], "unknown preset 'sepia'"),
        (
            ["--source-prompt", "a", "--target-prompt", "b", "--preset", "style"],
            "preset 'style' is not validated on this model",
        ),
        (["--source-prompt", "a", "--target-prompt", "b", "--box", "1,2,3"], "--box must be four integers"),
        (["--source-prompt", "a", "--target-prompt", "b", "--method", "sdedit"], "unknown method 'sdedit'"),
    ],
)
def test_cli_edit_refuses_bad_input(app, tiny_checkpoint, source_mp4, tmp_path, args, message):
    result = runner.invoke(
        app, ["edit", source_mp4, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "x.mp4"), *args]
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output


def test_cli_edit_mask_of_the_wrong_size(app, tiny_checkpoint, source_mp4, tmp_path):
    from PIL import Image

    mask = tmp_path / "mask.png"
    Image.new("L", (20, 10), 255).save(mask)
    result = runner.invoke(
        app,
        [
            "edit",
            source_mp4,
            "--model",
            str(tiny_checkpoint),
            "-s",
            "a",
            "-t",
            "b",
            "--mask",
            str(mask),
            "--out",
            str(tmp_path / "x.mp4"),
        ],
    )
    assert result.exit_code == 2 and "mask is 20x10 (WxH) but the video is 64x32" in result.output


def test_parameter_count_on_meta_matches_the_loaded_model(pipe, tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "transformer" / "config.json").read_text())
    loaded = sum(p.numel() for p in pipe.components.transformer.parameters())
    assert parameter_count("transformer", config) == loaded


def test_memory_estimate_of_the_real_5b_config():
    """Wan2.2-TI2V-5B: ~5.0 B transformer params; 704x1280x121 = 27280 tokens; fits 24 GiB with offload."""
    assert parameter_count("transformer", WAN22_TI2V_5B_CONFIGS["transformer"]) == 4_999_787_712
    none = estimate_memory(offload="none", batch_rows=2)
    model = estimate_memory(offload="model", batch_rows=2)
    group = estimate_memory(offload="group", batch_rows=2)
    assert none.tokens == 31 * 22 * 40
    assert not none.fits(24) and model.fits(24) and group.fits(24)
    assert not estimate_memory(offload="model", batch_rows=4).fits(24)  # FlowEdit needs --max-batch-rows 2
    assert estimate_memory(offload="model", batch_rows=4).peak_bytes > model.peak_bytes > 10 * GB


def test_cli_edit_memory(app, tiny_checkpoint, tmp_path):
    result = runner.invoke(
        app, ["edit-memory", "--rows", "2", "--offload", "model", "--json", str(tmp_path / "m.json")]
    )
    assert result.exit_code == 0, result.output
    assert "27280 tokens" in result.output and "fits 24 GiB: yes" in result.output
    tiny = runner.invoke(
        app,
        ["edit-memory", "--model", str(tiny_checkpoint), "--height", "64", "--width", "64", "--frames", "5"],
    )
    assert tiny.exit_code == 0 and "| none | 4 |" in tiny.output, tiny.output
    bad = runner.invoke(app, ["edit-memory", "--height", "100"])
    assert bad.exit_code == 2 and "multiples of 32" in bad.output


def test_settings_round_trip_through_json(validated):
    s = resolve_settings(source_prompt="a", target_prompt="b", preset="background", steps=9)
    again = EditSettings.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s
    with pytest.raises(InputError, match="unknown settings"):
        EditSettings.from_dict({"source_prompt": "a", "target_prompt": "b", "colour": 1})


def test_a_preset_keeps_its_flowedit_window_as_a_fraction_when_steps_change(validated):
    from flowstudio.edit.flowedit import FlowEditConfig

    own = resolve_settings(source_prompt="a", target_prompt="b", preset="color")
    assert own.steps == validated["steps"] and own.flowedit == validated["flowedit"]
    fraction = own.flowedit.n_max / own.steps
    more = resolve_settings(source_prompt="a", target_prompt="b", preset="color", steps=30)
    assert more.steps == 30 and more.flowedit.n_max == round(fraction * 30)
    explicit = FlowEditConfig(n_max=5)  # an explicit window is taken as given
    mine = resolve_settings(source_prompt="a", target_prompt="b", preset="color", steps=30, flowedit=explicit)
    assert mine.flowedit == explicit
