"""Bad input, measured (issue 14, item 8): every case is refused up front with one line that names
the argument, states the rule and says what to do; no traceback, nothing half-written."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from edit_fixtures import gradient_clip, one_thread
from typer.testing import CliRunner

from flowstudio.cli import app
from flowstudio.errors import InputError
from flowstudio.video import normalize_clip, write_video

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)
runner = CliRunner()


def _one_line_error(result, *fragments: str) -> str:
    """The command failed with exit code 2 and one 'error:' line holding every fragment."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    text = " ".join(result.output.split())
    assert "Traceback" not in result.output and text.startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in text, result.output
    return text


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    from flowstudio.pipeline import WanVideoPipeline

    return WanVideoPipeline.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def source_mp4(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad-input") / "source.mp4"
    write_video(path, gradient_clip(5, 32, 64), fps=8)
    return path


# -- generate ---------------------------------------------------------------------------------

GENERATE = [
    "generate",
    "-p",
    "a red ball",
    "--frames",
    "5",
    "--height",
    "32",
    "--width",
    "32",
    "--steps",
    "1",
]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--shift", "0"], ["shift must be a finite number > 0, got 0.0"]),
        (["--shift", "-1"], ["shift must be a finite number > 0, got -1.0"]),
        (["--shift", "nan"], ["shift must be a finite number > 0, got nan"]),
        (["--guidance", "nan"], ["guidance_scale must be a finite number, got nan"]),
        (["--guidance", "inf"], ["guidance_scale must be a finite number, got inf"]),
        (["--dtype", "foo"], ["--dtype must be one of float32, bfloat16, float16, got 'foo'"]),
        (["--dtype", "Tensor"], ["--dtype must be one of", "'Tensor'"]),
        (["--vae-dtype", "bf16"], ["--vae-dtype must be one of float32, bfloat16, float16, got 'bf16'"]),
        (["--fps", "0"], ["--fps must be a finite number > 0, got 0.0"]),
        (["--fps", "-5"], ["--fps must be a finite number > 0, got -5.0"]),
        (["-p", ""], ["prompt is missing or empty"]),
        (["-p", "   "], ["prompt is missing or empty"]),
        (["--device", "gpu"], ["--device must be a torch device such as cpu, cuda or cuda:1, got 'gpu'"]),
    ],
)
def test_generate_refuses_bad_settings_before_loading(tiny_checkpoint, tmp_path, args, fragments):
    out = tmp_path / "g.mp4"
    result = runner.invoke(app, [*GENERATE, "--model", str(tiny_checkpoint), "--out", str(out), *args])
    _one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_an_unsupported_container_up_front(tiny_checkpoint, tmp_path):
    result = runner.invoke(
        app, [*GENERATE, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "x.avi")]
    )
    _one_line_error(result, "x.avi", ".mp4, .m4v, .mov", "x.mp4")
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_a_json_sibling_that_is_a_folder_and_leaves_no_mp4(tiny_checkpoint, tmp_path):
    (tmp_path / "g.json").mkdir()
    result = runner.invoke(
        app, [*GENERATE, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "g.mp4")]
    )
    _one_line_error(result, "g.json is an existing folder")
    assert not (tmp_path / "g.mp4").exists()


def test_generate_refuses_what_the_memory_estimate_says_does_not_fit(tiny_checkpoint, tmp_path, monkeypatch):
    """4096x4096x121 was killed by the kernel after minutes; the estimate refuses it at once."""
    monkeypatch.setattr("flowstudio.edit.memory.available_memory", lambda device: (8 * 1024**3, "this test"))
    args = ["generate", "-p", "a red ball", "--model", str(tiny_checkpoint), "--out", str(tmp_path / "g.mp4")]
    result = runner.invoke(app, [*args, "--height", "4096", "--width", "4096", "--frames", "121"])
    text = _one_line_error(
        result, "121 frames of 4096x4096 need about", "memory estimate", "this test has 8.0 GiB"
    )
    assert "--height/--width/--frames" in text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("folder", ["[draft]", "[/e]", "a[b]c"])
def test_error_messages_print_paths_with_brackets_as_they_are(tmp_path, folder):
    """Rich markup: ``[/e]`` crashed the error printer and ``[draft]`` vanished from the path."""
    model = tmp_path / folder / "model"
    result = runner.invoke(app, [*GENERATE, "--model", str(model), "--out", str(tmp_path / "g.mp4")])
    _one_line_error(result, str(model))


def test_api_generate_refuses_a_missing_prompt():
    from flowstudio.pipeline import GenerationSettings

    with pytest.raises(InputError, match="prompt is missing or empty"):
        GenerationSettings(prompt=None)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="steps must be a whole number >= 1, got 2.5"):
        GenerationSettings(prompt="a cat", steps=2.5)  # type: ignore[arg-type]


# -- edit ---------------------------------------------------------------------------------------

PROMPTS = {"source_prompt": "a red ball", "target_prompt": "a blue ball"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"steps": 1.5}, r"steps must be a whole number >= 1, got 1.5 \(float\)"),
        ({"steps": "2"}, r"steps must be a whole number >= 1, got '2' \(str\)"),
        ({"steps": True}, "steps must be a whole number"),
        ({"shift": 0}, "shift must be a finite number > 0, got 0"),
        ({"shift": -1.0}, "shift must be a finite number > 0"),
        ({"shift": float("nan")}, "shift must be a finite number > 0, got nan"),
        ({"target_guidance": float("inf")}, "target_guidance must be a finite number, got inf"),
        ({"source_guidance": float("nan")}, "source_guidance must be a finite number"),
        ({"fps": 0}, "fps must be a finite number > 0, got 0"),
        ({"fps": -5}, "fps must be a finite number > 0, got -5"),
        ({"dtype": "Tensor"}, "dtype must be one of float32, bfloat16, float16"),
        ({"mask": np.full((32, 64), np.nan, np.float32)}, r"mask holds 2048 NaN/inf value\(s\)"),
        ({"size": "big"}, "size must be 'model', 'native' or"),
    ],
)
def test_api_edit_refuses_bad_values(pipe, options, message):
    from flowstudio.edit import edit

    with pytest.raises(InputError, match=message):
        edit(gradient_clip(), model=pipe, **{**PROMPTS, "steps": 1, **options})


def test_edit_refuses_to_overwrite_its_source(pipe, tmp_path, source_mp4):
    from flowstudio.edit import edit

    source = tmp_path / "clip.mp4"
    shutil.copy(source_mp4, source)
    before = source.read_bytes()
    for out in (source, tmp_path / "." / "clip.mp4"):
        with pytest.raises(InputError, match="is also an input"):
            edit(source, model=pipe, out=out, steps=1, **PROMPTS)
    mask = tmp_path / "m_side_by_side.mp4"
    write_video(mask, np.zeros((5, 32, 64, 3), np.uint8), fps=8)
    with pytest.raises(InputError, match="is also an input"):  # its side-by-side would be the mask
        edit(source, model=pipe, mask=str(mask), out=tmp_path / "m.mp4", steps=1, **PROMPTS)
    assert source.read_bytes() == before


def test_edit_checks_outputs_before_the_run(pipe, tmp_path, monkeypatch):
    from flowstudio.edit import api, edit

    monkeypatch.setattr(
        api, "run_method", lambda *a: pytest.fail("the edit ran before its outputs were checked")
    )
    with pytest.raises(InputError, match="out must be an .mp4 path"):
        edit(gradient_clip(), model=pipe, out=tmp_path / "x.avi", steps=1, **PROMPTS)
    (tmp_path / "y.json").mkdir()
    with pytest.raises(InputError, match="y.json is an existing folder"):
        edit(gradient_clip(), model=pipe, out=tmp_path / "y.mp4", steps=1, **PROMPTS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.json"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--shift", "0"], ["shift must be a finite number > 0"]),
        (["--shift", "nan"], ["shift must be a finite number > 0, got nan"]),
        (["--dtype", "Tensor"], ["--dtype must be one of float32, bfloat16, float16, got 'Tensor'"]),
        (["--vae-dtype", "half"], ["--vae-dtype must be one of float32, bfloat16, float16, got 'half'"]),
        (["--fps", "0"], ["fps must be a finite number > 0, got 0.0"]),
        (["--target-guidance", "nan"], ["--target-guidance must be a finite number"]),
        (["--size", "huge"], ["--size must be model, native or HxW"]),
        (["--device", "gpu"], ["device must be a torch device"]),
        (["-s", ""], ["--source-prompt is missing"]),
    ],
)
def test_cli_edit_refuses_bad_values(tiny_checkpoint, source_mp4, tmp_path, args, fragments):
    base = ["edit", str(source_mp4), "--model", str(tiny_checkpoint), "-s", "a red ball", "-t", "a blue ball"]
    result = runner.invoke(app, [*base, "--steps", "1", "--out", str(tmp_path / "e.mp4"), *args])
    _one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_cli_edit_out_equal_to_source_is_refused(tiny_checkpoint, source_mp4, tmp_path):
    source = tmp_path / "[draft] clip.mp4"
    shutil.copy(source_mp4, source)
    before = source.read_bytes()
    args = ["edit", str(source), "--model", str(tiny_checkpoint), "-s", "a", "-t", "b", "--out", str(source)]
    _one_line_error(runner.invoke(app, args), "is also an input", "[draft] clip.mp4", "choose another --out")
    assert source.read_bytes() == before


def test_generate_and_edit_agree_on_empty_prompts(tiny_checkpoint, source_mp4, tmp_path):
    gen = runner.invoke(
        app, [*GENERATE, "--model", str(tiny_checkpoint), "-p", " ", "--out", str(tmp_path / "g.mp4")]
    )
    _one_line_error(gen, "prompt is missing")
    edit_args = ["edit", str(source_mp4), "--model", str(tiny_checkpoint), "-s", " ", "-t", "b"]
    _one_line_error(runner.invoke(app, [*edit_args, "--out", str(tmp_path / "e.mp4")]), "prompt is missing")


# -- sizes --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_pipe(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint, as if trained at 32x32 (a toy model's training_summary.json)."""
    from flowstudio.pipeline import WanVideoPipeline

    folder = tmp_path_factory.mktemp("trained") / "model"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "training_summary.json").write_text(json.dumps({"config": {"height": 32, "width": 32}}))
    return WanVideoPipeline.from_pretrained(folder, device="cpu")


def test_edit_runs_at_the_models_trained_size_by_default(trained_pipe):
    from flowstudio.edit import edit

    clip = gradient_clip(5, 64, 96)
    result = edit(clip, model=trained_pipe, steps=1, **PROMPTS)
    assert result.frames.shape == (5, 32, 32, 3)
    assert result.info["size_mode"].startswith("model: trained at 32x32")
    assert "size 64x96 -> 32x32 (resize)" in result.info["normalize"]
    native = edit(clip, model=trained_pipe, steps=1, size="native", **PROMPTS)
    assert native.frames.shape == (5, 64, 96, 3) and native.info["size_mode"].startswith("native")
    given = edit(clip, model=trained_pipe, steps=1, size=(32, 64), **PROMPTS)
    assert given.frames.shape == (5, 32, 64, 3)


def test_edit_on_a_model_without_a_trained_size_keeps_the_clip_size(pipe):
    from flowstudio.edit import edit

    result = edit(gradient_clip(5, 32, 64), model=pipe, steps=1, **PROMPTS)
    assert result.frames.shape == (5, 32, 64, 3) and "records no trained size" in result.info["size_mode"]


def test_cli_edit_size_option(tiny_checkpoint, source_mp4, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / "training_summary.json").write_text(json.dumps({"config": {"height": 32, "width": 32}}))
    base = [
        "edit",
        str(source_mp4),
        "--model",
        str(folder),
        "-s",
        "a red ball",
        "-t",
        "a blue ball",
        "--steps",
        "1",
    ]
    assert runner.invoke(app, [*base, "--out", str(tmp_path / "m.mp4")]).exit_code == 0
    assert json.loads((tmp_path / "m.json").read_text())["info"]["size"] == [5, 32, 32]
    assert runner.invoke(app, [*base, "--size", "native", "--out", str(tmp_path / "n.mp4")]).exit_code == 0
    assert json.loads((tmp_path / "n.json").read_text())["info"]["size"] == [5, 32, 64]
    help_text = " ".join(runner.invoke(app, ["edit", "--help"]).output.split())
    assert "trained at" in help_text and "native" in help_text


@pytest.mark.parametrize(("frames", "expected"), [(2, 5), (3, 5), (4, 5), (1, 1), (5, 5), (6, 5), (8, 5)])
def test_trim_pads_a_short_clip_instead_of_cutting_it_to_one_frame(frames, expected):
    out, report = normalize_clip(gradient_clip(frames, 32, 32), frame_policy="trim", size_policy="resize")
    assert out.shape[0] == expected
    if frames < 5 and frames > 1:
        assert report.frame_policy == "pad" and report.frame_indices[:frames] == tuple(range(frames))
        assert f"frames {frames} -> 5 (pad: repeat last frame" in report.describe()


def test_edit_keeps_every_frame_of_a_three_frame_clip(pipe):
    from flowstudio.edit import edit

    result = edit(gradient_clip(3, 32, 64), model=pipe, steps=1, **PROMPTS)
    assert result.frames.shape[0] == 5 and "frames 3 -> 5" in result.info["normalize"]


# -- avatar -------------------------------------------------------------------------------------


def _speech_wav(path: Path, seconds: float = 0.32, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes((samples * 32767).astype(np.int16).tobytes())
    return path


def _png(path: Path, height: int, width: int) -> Path:
    from PIL import Image

    yy, xx = np.mgrid[:height, :width]
    image = np.stack([xx * 4 % 256, yy * 4 % 256, (xx + yy) * 2 % 256], axis=-1).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope="module")
def avatar_checkpoint(tmp_path_factory) -> Path:
    import torch

    from flowstudio.avatar.model.config import toy_config
    from flowstudio.avatar.model.dualforce import DualForceModel

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("avatar") / "dualforce"
    DualForceModel(toy_config()).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("steps", ["-2", "0"])
def test_avatar_steps_below_one_are_refused(tmp_path, steps):
    from flowstudio.avatar.cli import avatar_app

    image, audio = _png(tmp_path / "ref.png", 64, 64), _speech_wav(tmp_path / "a.wav")
    args = ["generate", "--image", str(image), "--audio", str(audio), "--out", str(tmp_path / "t.mp4")]
    result = runner.invoke(avatar_app, [*args, "--steps", steps])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert (
        f"steps must be a whole number >= 1, got {steps}" in result.output
        and "Traceback" not in result.output
    )
    assert not (tmp_path / "t.mp4").exists()


def test_avatar_fits_a_reference_of_another_size_and_says_so(tmp_path, avatar_checkpoint):
    from flowstudio.avatar.cli import avatar_app

    image, audio = _png(tmp_path / "ref.png", 96, 128), _speech_wav(tmp_path / "a.wav")
    args = ["generate", "--image", str(image), "--audio", str(audio), "--out", str(tmp_path / "t.mp4")]
    result = runner.invoke(avatar_app, [*args, "--checkpoint", str(avatar_checkpoint), "--steps", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["reference_image"] == "96x128 -> 64x64 (height x width): center crop to 96x96, then resize"
    assert report["model"] == str(avatar_checkpoint)


def test_avatar_names_the_packaged_model_not_random(tmp_path, avatar_checkpoint, monkeypatch):
    """The JSON said ``"model": "random toy"`` for the trained packaged model."""
    from flowstudio.avatar.inference import generate as gen

    monkeypatch.setattr(gen, "TOY_CHECKPOINT", avatar_checkpoint)  # stands in for the packaged folder
    image, audio = _png(tmp_path / "ref.png", 64, 64), _speech_wav(tmp_path / "a.wav")
    report = gen.generate(image, audio, tmp_path / "t.mp4", steps=1)
    assert report.random_weights is False and report.model == str(avatar_checkpoint)
    assert report.reference_image == "64x64 (the model's size, unchanged)"
    record = json.loads((tmp_path / "t.json").read_text())  # written through flowstudio.jobs.JobResult
    assert record["kind"] == "avatar" and record["files"] == {"video": "t.mp4"} and record["model_calls"] > 0
    monkeypatch.setattr(gen, "TOY_CHECKPOINT", tmp_path / "none")
    assert gen.generate(image, audio, tmp_path / "r.mp4", steps=1).model == "random toy (seed 0)"


# -- bench --------------------------------------------------------------------------------------


def _manifest(folder: Path, **case) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if "source" not in case:
        write_video(folder / "clip.mp4", gradient_clip(5, 32, 32), fps=8)
        case["source"] = "clip.mp4"
    data = {
        "format": "flowstudio-bench-manifest",
        "version": 1,
        "name": "bad-input",
        "cases": [{"id": "case-1", "edit_type": "color", "source_prompt": "a", "target_prompt": "b", **case}],
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(data))
    return path


def test_bench_run_out_that_is_a_file_is_refused(tmp_path):
    from flowstudio.bench.cli import bench_app

    manifest, out = _manifest(tmp_path / "set"), tmp_path / "results.txt"
    out.write_text("keep me")
    result = runner.invoke(bench_app, ["run", "-m", "identity", "-t", str(manifest), "--out", str(out)])
    _one_line_error(result, "is an existing file, not a folder")
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("source", ["../../..", ".", "/"])
def test_bench_rehash_refuses_folders_that_would_walk_the_file_system(tmp_path, source):
    from flowstudio.bench.cli import bench_app

    manifest = _manifest(tmp_path / "a" / "b" / "set", source=source)
    result = runner.invoke(bench_app, ["validate", str(manifest), "--rehash"])
    _one_line_error(result, "source:", "give a video file or a folder of frames")


def test_bench_case_ids_with_a_trailing_newline_are_refused(tmp_path):
    from flowstudio.bench.manifest import ManifestError, load_testset

    manifest = _manifest(tmp_path / "set")
    data = json.loads(manifest.read_text())
    data["cases"][0]["id"] = "case-1\n"
    manifest.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="does not match"):
        load_testset(manifest)


def test_bench_manifest_paths_can_be_confined_to_a_root(tmp_path):
    from flowstudio.bench.cli import bench_app
    from flowstudio.bench.manifest import ManifestError, load_testset, record_hashes

    write_video(tmp_path / "outside.mp4", gradient_clip(5, 32, 32), fps=8)
    manifest = _manifest(tmp_path / "set", source="../outside.mp4")
    assert len(load_testset(manifest)) == 1  # no root: paths may point anywhere (local use)
    with pytest.raises(ManifestError, match="outside the allowed root"):
        load_testset(manifest, root=tmp_path / "set")
    with pytest.raises(ManifestError, match="outside the allowed root"):
        record_hashes(manifest, root=tmp_path / "set")
    assert len(load_testset(manifest, root=tmp_path)) == 1
    result = runner.invoke(bench_app, ["validate", str(manifest), "--root", str(tmp_path / "set")])
    _one_line_error(result, "outside the allowed root")


def test_bench_frame_folders_are_still_case_files(tmp_path):
    from PIL import Image

    from flowstudio.bench.manifest import load_testset

    frames = tmp_path / "set" / "frames"
    frames.mkdir(parents=True)
    for i, frame in enumerate(gradient_clip(5, 32, 32)):
        Image.fromarray(frame).save(frames / f"{i:03d}.png")
    assert len(load_testset(_manifest(tmp_path / "set", source="frames"))) == 1


# -- worlds, checkpoints --------------------------------------------------------------------------


def test_worlds_make_into_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["worlds", "make", "shapes", str(blocker / "data"), "--clips", "1"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "cannot write into" in result.output and "Traceback" not in result.output


def test_a_missing_config_key_hint_does_not_claim_the_5b_value(tiny_checkpoint, tmp_path):
    from flowstudio.weights import check_checkpoint

    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "transformer" / "config.json").read_text())
    del config["num_layers"]
    (folder / "transformer" / "config.json").write_text(json.dumps(config))
    [problem] = [p for p in check_checkpoint(folder).problems if p.kind == "missing_key"]
    assert "with this model's value" in problem.hint and "the 5B reference" in problem.hint
    assert "its value in" not in problem.hint


def test_bench_engine_edits_at_the_case_size_not_the_trained_size(trained_pipe):
    """Benchmark outputs are scored against the case's files, so the adapter keeps the case's size."""
    from types import SimpleNamespace

    from flowstudio.edit.bench_adapter import EngineMethod

    method = EngineMethod("flowedit", trained_pipe.components.path, steps=1)
    method._pipe = trained_pipe
    case = SimpleNamespace(
        edit_type="color",
        source_prompt="a red ball",
        target_prompt="a blue ball",
        load_source=lambda: gradient_clip(5, 32, 64),
        load_mask=lambda: None,
    )
    assert method(case, Path("unused"), seed=0).shape == (5, 32, 64, 3)
