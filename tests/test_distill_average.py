"""Averaged students (flowstudio.distill.average): the weighted mean of their transformers in a
runnable student folder, and refusals of students that cannot be averaged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from flowstudio.distill.average import AVERAGE_FILE, average_students
from flowstudio.distill.export import export_student, student_settings
from flowstudio.errors import InputError

WEIGHTS = Path("transformer/diffusion_pytorch_model.safetensors")


def _student(tiny: Path, out: Path, offset: float, steps: int = 4) -> Path:
    """The tiny checkpoint's transformer with ``offset`` added to every weight, exported as a student."""
    from diffusers import WanTransformer3DModel

    transformer = WanTransformer3DModel.from_pretrained(tiny / "transformer")
    with torch.no_grad():
        for parameter in transformer.parameters():
            parameter.add_(offset)
    return export_student(tiny, transformer, out, steps=steps, shift=5.0)


@pytest.fixture
def students(tiny_checkpoint, tmp_path) -> tuple[Path, Path]:
    return _student(tiny_checkpoint, tmp_path / "a", 0.0), _student(tiny_checkpoint, tmp_path / "b", 0.5)


def test_the_average_is_the_weighted_mean_of_every_tensor_and_a_runnable_student(students, tmp_path):
    from flowstudio.pipeline import GenerationSettings, WanVideoPipeline

    a, b = students
    out = average_students([a, b], tmp_path / "mix", [3, 1])  # normalised to 0.75 / 0.25
    wa, wb, mixed = (load_file(str(folder / WEIGHTS)) for folder in (a, b, out))
    assert set(mixed) == set(wa)
    for key, tensor in mixed.items():
        expected = (0.75 * wa[key].float() + 0.25 * wb[key].float()).to(wa[key].dtype)
        torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-6)
    assert not torch.equal(mixed["proj_out.weight"], wa["proj_out.weight"])
    # everything else is the first student's: sampling settings, VAE, text encoder
    assert student_settings(out) == student_settings(a)
    for name in ("vae/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"):
        assert (out / name).read_bytes() == (a / name).read_bytes()
    record = json.loads((out / AVERAGE_FILE).read_text())
    assert [s["weight"] for s in record["sources"]] == [0.75, 0.25]
    pipe = WanVideoPipeline.from_pretrained(out)
    settings = GenerationSettings(
        prompt="a red box", num_frames=5, height=32, width=32, steps=4, guidance_scale=1.0, shift=5.0,
        solver="dmd", seed=0,
    )  # fmt: skip
    frames = pipe.generate(settings, progress=False).frames
    assert frames.shape == (5, 32, 32, 3) and frames.std() > 0


def test_equal_weights_of_a_student_with_itself_give_it_back(students, tmp_path):
    a, _ = students
    out = average_students([a, a], tmp_path / "same")
    wa, mixed = load_file(str(a / WEIGHTS)), load_file(str(out / WEIGHTS))
    assert all(torch.equal(mixed[k], wa[k]) for k in wa)


def test_students_that_cannot_be_averaged_are_refused_and_nothing_is_written(
    students, tiny_checkpoint, tmp_path
):
    a, b = students
    eight = _student(tiny_checkpoint, tmp_path / "eight", 0.1, steps=8)
    with pytest.raises(InputError, match="distill.json"):
        average_students([a, eight], tmp_path / "x")
    with pytest.raises(InputError, match="no distill.json"):
        average_students([a, tiny_checkpoint], tmp_path / "x")  # the teacher is not a student
    with pytest.raises(InputError, match="at least two"):
        average_students([a], tmp_path / "x")
    with pytest.raises(InputError, match="one weight per student"):
        average_students([a, b], tmp_path / "x", [1.0])
    with pytest.raises(InputError, match=">= 0"):
        average_students([a, b], tmp_path / "x", [1.0, -1.0])
    wider = tmp_path / "wider"
    shutil.copytree(b, wider)
    config = json.loads((wider / "transformer/config.json").read_text())
    config["num_layers"] += 1
    (wider / "transformer/config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="transformer/config.json"):
        average_students([a, wider], tmp_path / "x")
    broken = tmp_path / "broken"
    shutil.copytree(b, broken)
    (broken / WEIGHTS).write_bytes((broken / WEIGHTS).read_bytes()[:100])  # truncated
    with pytest.raises(InputError, match="cannot read"):
        average_students([a, broken], tmp_path / "x")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.tmp").exists()
    with pytest.raises(InputError, match="exists"):
        average_students([a, b], b)  # never overwrites
    assert (b / WEIGHTS).is_file()


def test_the_command_averages_and_reports_bad_weights(students, tmp_path):
    from flowstudio.cli import app

    a, b = students
    runner = CliRunner()
    done = runner.invoke(
        app, ["distill-average", str(a), str(b), "--out", str(tmp_path / "m"), "--weights", "1,1"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "m" / AVERAGE_FILE).read_text())["sources"][1]["weight"] == 0.5
    bad = runner.invoke(
        app, ["distill-average", str(a), str(b), "--out", str(tmp_path / "n"), "--weights", "1,x"]
    )
    assert bad.exit_code != 0 and "comma-separated numbers" in bad.output
    assert not (tmp_path / "n").exists()
