"""The command line: help texts, version, models check, generate."""

from __future__ import annotations

import json
import shutil

import av
import pytest
from typer.testing import CliRunner

from flowstudio import __version__
from flowstudio.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["generate"],
        ["models"],
        ["models", "check"],
        ["models", "make-tiny"],
        ["avatar"],
        ["avatar", "generate"],
        ["avatar", "verify"],
        ["avatar", "train"],
        ["worlds"],
        ["worlds", "make", "shapes"],
        ["worlds", "train", "shapes"],
        ["edit"],
        ["edit-memory"],
    ],
)
def test_help_on_every_command(args):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_models_check_ok_and_broken(tiny_checkpoint, tmp_path):
    ok = runner.invoke(app, ["models", "check", str(tiny_checkpoint)])
    assert ok.exit_code == 0, ok.output
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "vae" / "config.json").unlink()
    bad = runner.invoke(app, ["models", "check", str(broken)])
    assert bad.exit_code == 1
    assert "vae/config.json" in bad.output


def test_generate_writes_mp4_and_settings(tiny_checkpoint, tmp_path):
    out = tmp_path / "clip.mp4"
    result = runner.invoke(
        app,
        [
            "generate",
            "--model",
            str(tiny_checkpoint),
            "--prompt",
            "a red bottle",
            "--frames",
            "5",
            "--height",
            "32",
            "--width",
            "32",
            "--steps",
            "2",
            "--seed",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == 5
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["settings"]["seed"] == 3 and record["settings"]["steps"] == 2


def test_generate_image_to_video(tiny_checkpoint, tmp_path):
    from PIL import Image

    image = tmp_path / "first.png"
    Image.new("RGB", (50, 40), (200, 30, 30)).save(image)
    out = tmp_path / "i2v.mp4"
    result = runner.invoke(
        app,
        [
            "generate",
            "--model",
            str(tiny_checkpoint),
            "--prompt",
            "a red bottle",
            "--image",
            str(image),
            "--frames",
            "5",
            "--height",
            "32",
            "--width",
            "32",
            "--steps",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.with_suffix(".json").read_text())["settings"]["image_conditioned"] is True


def test_generate_errors_are_clear(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("FLOWSTUDIO_MODEL", raising=False)
    monkeypatch.setattr("flowstudio.models.TOY_MODEL", tmp_path / "no-toy-model")  # as before it ships
    no_model = runner.invoke(app, ["generate", "--prompt", "x", "--out", str(tmp_path / "a.mp4")])
    assert no_model.exit_code == 2 and "no model given" in no_model.output
    bad_frames = runner.invoke(
        app,
        [
            "generate",
            "--model",
            str(tiny_checkpoint),
            "--prompt",
            "x",
            "--frames",
            "6",
            "--out",
            str(tmp_path / "b.mp4"),
        ],
    )
    assert bad_frames.exit_code == 2 and "4k+1" in bad_frames.output
    assert not (tmp_path / "b.mp4").exists()
    missing = runner.invoke(app, ["generate", "--model", str(tmp_path / "nope"), "--prompt", "x"])
    assert missing.exit_code == 2 and "nope" in missing.output


def test_worlds_make_shapes_writes_a_dataset(tmp_path):
    out = tmp_path / "shapes"
    result = runner.invoke(
        app,
        [
            "worlds",
            "make",
            "shapes",
            str(out),
            "--clips",
            "3",
            "--frames",
            "5",
            "--height",
            "32",
            "--width",
            "32",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = (out / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 3


def test_demo_runs_every_main_job(tmp_path):
    from flowstudio.demo import run

    summary = run(tmp_path, steps=2)
    for name in ("edit", "text_to_video", "image_to_video"):
        with av.open(summary["outputs"][name]["video"]) as container:
            assert container.streams.video[0].frames > 0 or sum(1 for _ in container.decode(video=0)) > 0
    from flowstudio.models import toy_model_available

    assert summary["trained"] == toy_model_available()
    expected = "toy model" if summary["trained"] else "random"
    assert expected in summary["model_kind"]
    assert summary["outputs"]["image_to_video"]["psnr_vs_true_render_frames_1_16"] > 0
    # the edit: what the colour reader sees in source, edit and ground truth, next to the target
    e = summary["outputs"]["edit"]
    assert (e["source_color"], e["target_color"]) == ("red", "blue")
    read = e["colour_read"]
    assert read["source"]["color"] == "red" and read["ground_truth"]["color"] == "blue"
    assert 0.0 < e["colour_read"]["edit"]["confidence"] <= 1.0
    assert e["edit_reached_target"] == (e["colour_read"]["edit"]["color"] == "blue")
    # the toy model's validated colour preset (FlowEdit), or explicit FlowEdit on a random checkpoint
    assert e["settings"]["method"] == "flowedit"
    if summary["trained"]:
        assert e["preset"].startswith("preset 'color'") and e["settings"]["preset"] == "color"
    else:
        assert "'color' preset is not validated" in e["preset"]
    assert (tmp_path / "edit_frames.png").stat().st_size > 1000
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["outputs"]["edit"]["colour_read"] == read
