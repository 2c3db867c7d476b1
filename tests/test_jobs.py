"""flowstudio.jobs: typed requests, the one preset merge, run(), JobResult and the CLI error handler."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from edit_fixtures import gradient_clip, one_thread
from pydantic import ValidationError
from typer.testing import CliRunner

from flowstudio.cli import app
from flowstudio.edit.flowedit import FlowEditConfig
from flowstudio.edit.presets import Preset
from flowstudio.errors import InputError
from flowstudio.jobs import EditRequest, GenerateRequest, JobResult, merge_edit_settings, parse_request, run
from flowstudio.jobs.errors import error_message
from flowstudio.jobs.result import comparable
from flowstudio.video import write_video

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)
runner = CliRunner()
PROMPTS = {"source_prompt": "a red ball", "target_prompt": "a blue ball"}


def _preset(n_max: int = 7, n_min: int = 0) -> Preset:
    """A validated preset record, made here: no shipped preset is validated (presets.py)."""
    values = {"method": "flowedit", "steps": 10, "flowedit": FlowEditConfig(n_max=n_max, n_min=n_min)}
    return Preset("test", "color", values, model="test", results="test", evidence="test")


# -- the one merge --------------------------------------------------------------------------------


def test_a_preset_window_scales_with_the_steps_whatever_other_flowedit_field_is_set():
    """The bug: --preset X --steps 30 edited over 21 of 30 steps, adding --n-avg 2 over 7 of 30."""
    own = merge_edit_settings(**PROMPTS, preset=_preset())
    assert (own.steps, own.flowedit.n_max) == (10, 7)
    more = merge_edit_settings(**PROMPTS, preset=_preset(), steps=30)
    assert more.flowedit == FlowEditConfig(n_max=21, n_min=0, n_avg=1)
    averaged = merge_edit_settings(**PROMPTS, preset=_preset(), steps=30, flowedit={"n_avg": 2})
    assert averaged.flowedit == FlowEditConfig(n_max=21, n_min=0, n_avg=2)
    # what the user sets is taken as given; the rest of the preset's window still scales
    mine = merge_edit_settings(**PROMPTS, preset=_preset(n_min=2), steps=30, flowedit={"n_max": 12})
    assert (mine.flowedit.n_max, mine.flowedit.n_min) == (12, 6)
    tight = merge_edit_settings(**PROMPTS, preset=_preset(n_min=2), steps=30, flowedit={"n_max": 5})
    assert (tight.flowedit.n_max, tight.flowedit.n_min) == (5, 5)  # a scaled tail never outgrows it
    whole = merge_edit_settings(**PROMPTS, preset=_preset(), steps=30, flowedit=FlowEditConfig(n_max=5))
    assert whole.flowedit == FlowEditConfig(n_max=5)  # a dataclass sets every field


def test_the_cli_request_merges_the_same_way(monkeypatch, tiny_checkpoint, tmp_path):
    """``edit --steps 30 --n-avg 2`` builds a request whose merge over the preset edits 21 of 30 steps."""
    import flowstudio.jobs

    seen = []

    def stop(request, **_):
        seen.append(request)
        raise KeyboardInterrupt  # no model run needed: the request is what is checked

    monkeypatch.setattr(flowstudio.jobs, "run", stop)
    source = tmp_path / "s.mp4"
    write_video(source, gradient_clip(), fps=8)
    args = ["edit", str(source), "-s", "a", "-t", "b", "--steps", "30", "--n-avg", "2"]
    runner.invoke(app, [*args, "--model", str(tiny_checkpoint), "--out", str(tmp_path / "e.mp4")])
    (request,) = seen
    assert request.flowedit.given() == {"n_avg": 2}
    s = merge_edit_settings(source_prompt="a", target_prompt="b", preset=_preset(), **request.overrides())
    assert (s.steps, s.flowedit.n_max, s.flowedit.n_avg) == (30, 21, 2)


def test_unvalidated_presets_still_refuse_in_the_merge():
    with pytest.raises(InputError, match="preset 'style' is not validated on this model"):
        merge_edit_settings(**PROMPTS, preset="style")
    with pytest.raises(InputError, match="unknown edit option"):
        merge_edit_settings(**PROMPTS, colour="blue")


# -- requests -------------------------------------------------------------------------------------


def test_requests_refuse_unknown_fields_and_bad_values_with_one_line():
    with pytest.raises(ValidationError) as err:
        EditRequest(source="a.mp4", **PROMPTS, colour="blue")
    assert error_message(err.value).startswith("unknown option 'colour'")
    cases = [
        ({"steps": 1.5}, "steps must be a whole number >= 1, got 1.5 (float)"),
        ({"steps": "2"}, "steps must be a whole number >= 1, got '2' (str)"),
        ({"shift": 0}, "shift must be a finite number > 0, got 0"),
        ({"method": "sdedit"}, "unknown method 'sdedit'; choose one of inversion"),
        ({"flowedit": {"n_avg": 0}}, "flowedit.n_avg must be a whole number >= 1, got 0"),
        ({"blend": {"strength": 2.0}}, "blend.strength must be in [0, 1], got 2.0"),
        ({"dtype": "Tensor"}, "dtype must be one of float32, bfloat16, float16, got 'Tensor'"),
        ({"vae_dtype": "bf16"}, "vae_dtype must be one of float32, bfloat16, float16, got 'bf16'"),
        ({"device": "gpu"}, "device must be a torch device"),
        ({"size": (0, 32)}, "size must be 'model', 'native' or (height, width)"),
    ]
    for fields, message in cases:
        with pytest.raises(ValidationError) as err:
            EditRequest(source="a.mp4", **PROMPTS, **fields)
        text = error_message(err.value)
        assert message in text and "\n" not in text, (fields, text)
    with pytest.raises(ValidationError) as err:
        GenerateRequest(prompt="a red ball", vae_dtype="half")
    # worded with the command's own option where it has one
    assert error_message(err.value, {"--vae-dtype"}).startswith("--vae-dtype must be one of")
    with pytest.raises(ValidationError) as err:
        GenerateRequest(prompt=" ")
    assert "prompt is missing or empty" in error_message(err.value)


def test_a_request_is_its_rest_schema_and_its_json_record():
    schema = GenerateRequest.model_json_schema()
    assert schema["additionalProperties"] is False and schema["required"] == ["prompt"]
    properties = schema["properties"]
    assert properties["steps"]["minimum"] == 1 and properties["shift"]["exclusiveMinimum"] == 0
    assert {"euler", "unipc"} <= set(properties["solver"]["enum"])
    edit_schema = EditRequest.model_json_schema()
    assert "flowedit" in edit_schema["properties"] and "n_avg" in json.dumps(edit_schema)
    request = EditRequest(source="clip.mp4", **PROMPTS, steps=12, flowedit={"n_avg": 2}, out="e.mp4")
    again = parse_request(json.loads(request.model_dump_json()))
    assert again == request and isinstance(again, EditRequest)
    assert again.overrides() == {"steps": 12, "flowedit": {"n_avg": 2}}


@pytest.mark.parametrize(
    ("kind", "given", "left_out", "bad"),
    [
        ("subject", ("subject_inset", 6), ("subject_grow", 0), ("subject_inset", 0)),
        ("swap", ("swap_erode", 1), ("swap_plate_grow", 0), ("swap_erode", -1)),
        ("swap", ("swap_cut", "subject"), ("swap_erode", 3), ("swap_cut", "border")),
        ("swap", ("swap_backdrop_tolerance", 0.0), ("swap_cut", "change"), ("swap_backdrop_tolerance", 1.0)),
        ("swap", ("swap_plate_check", 0.0), ("swap_backdrop_tolerance", 0.12), ("swap_plate_check", -1.0)),
        ("subject", ("subject_confirm_grow", 4), ("subject_inset", 8), ("subject_confirm_grow", -1)),
    ],
)
def test_a_request_asks_for_a_pixel_composite(kind, given, left_out, bad):
    blend = {"strength": 0.0, "pixel_composite": True, "composite_mask": kind, given[0]: given[1]}
    request = parse_request({"kind": "edit", "source": "clip.mp4", **PROMPTS, "blend": blend})
    settings = merge_edit_settings(**PROMPTS, **request.overrides())
    assert settings.blend.composite_mask == kind and getattr(settings.blend, given[0]) == given[1]
    assert getattr(settings.blend, left_out[0]) == left_out[1], "fields left out keep their defaults"
    with pytest.raises(ValidationError):
        parse_request({"kind": "edit", "source": "clip.mp4", **PROMPTS, "blend": {bad[0]: bad[1]}})


# -- JobResult ------------------------------------------------------------------------------------


def _result(frames: np.ndarray) -> JobResult:
    return JobResult(
        kind="edit",
        videos={"video": frames, "side_by_side": np.concatenate([frames, frames], axis=2)},
        fps=8.0,
        request={"kind": "edit"},
        settings={"steps": 1},
        seed=0,
        model_calls=1,
        timings={"run": 0.1, "total": 0.1},
        provenance={"model": None},
    )


def test_write_puts_the_record_beside_the_videos(tmp_path):
    files = _result(gradient_clip()).write(tmp_path / "e.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "e.mp4", "e_side_by_side.mp4"]
    record = json.loads(files["record"].read_text())
    assert record["files"] == {"video": "e.mp4", "side_by_side": "e_side_by_side.mp4"}
    assert record["format"] == "flowstudio-job" and record["frames"] == [5, 32, 64]
    assert set(record) >= {"request", "settings", "seed", "timings", "provenance", "model_calls"}


def test_write_is_all_or_nothing(tmp_path, monkeypatch):
    import flowstudio.video

    real = flowstudio.video.write_video

    def second_fails(path, frames, fps, **kwargs):
        if "side_by_side" in str(path):
            raise OSError("disk full")
        return real(path, frames, fps, **kwargs)

    monkeypatch.setattr(flowstudio.video, "write_video", second_fails)
    with pytest.raises(OSError, match="disk full"):
        _result(gradient_clip()).write(tmp_path / "e.mp4")
    assert list(tmp_path.iterdir()) == []  # no mp4 without its record, no temporary file left


def test_the_model_fingerprint_is_cached_and_follows_the_files(tiny_checkpoint, tmp_path):
    import shutil

    from flowstudio.jobs import provenance

    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    first = provenance.model_fingerprint(folder)
    assert first.startswith("sha256:") and provenance.model_fingerprint(tiny_checkpoint) == first  # a copy
    hits = provenance._fingerprint.cache_info().hits
    assert provenance.model_fingerprint(folder) == first
    assert provenance._fingerprint.cache_info().hits == hits + 1  # not read again
    config = folder / "transformer" / "config.json"
    config.write_text(config.read_text().replace("{", '{"note": 1, ', 1))
    assert provenance.model_fingerprint(folder) != first


# -- run, CLI == API ------------------------------------------------------------------------------


def test_cli_and_api_give_identical_outputs(monkeypatch, tmp_path):
    """One request on the packaged toy model (small, 2 steps): bit-identical frames, equal records.

    The frames compared are those handed to the encoder: x264 itself was seen to encode the same
    frames differently now and then in one process (threaded encoding), which is not the job's doing.
    """
    import flowstudio.video
    from flowstudio.models import toy_model_available

    if not toy_model_available():
        pytest.skip("no packaged toy model in this checkout")
    monkeypatch.delenv("FLOWSTUDIO_MODEL", raising=False)
    encoded: dict[str, np.ndarray] = {}
    real = flowstudio.video.write_video

    def spy(path, frames, fps, **kwargs):
        encoded[Path(path).resolve().parent.name] = frames.copy()
        return real(path, frames, fps, **kwargs)

    monkeypatch.setattr(flowstudio.video, "write_video", spy)
    fields = {"prompt": "a red ball", "num_frames": 5, "height": 64, "width": 64, "steps": 2, "seed": 3}
    for side in ("cli", "api"):
        (tmp_path / side).mkdir()
    monkeypatch.chdir(tmp_path / "cli")  # the same relative --out on both sides: equal requests
    args = ["generate", "-p", "a red ball", "--frames", "5", "--height", "64", "--width", "64"]
    result = runner.invoke(app, [*args, "--steps", "2", "--seed", "3", "--out", "clip.mp4"])
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path / "api")
    calls = []
    job = run(GenerateRequest(**fields, out="clip.mp4"), progress=lambda *a: calls.append(a))
    assert calls == [(1, 2, "denoise"), (2, 2, "denoise")]
    assert encoded["cli"].shape == (5, 64, 64, 3) and np.array_equal(encoded["cli"], encoded["api"])
    assert np.array_equal(encoded["api"], job.frames)
    records = [json.loads((tmp_path / side / "clip.json").read_text()) for side in ("cli", "api")]
    assert comparable(records[0]) == comparable(records[1]) == comparable(job.record())
    assert records[0]["provenance"]["model"]["hash"].startswith("sha256:")
    for side in ("cli", "api"):
        with av.open(str(tmp_path / side / "clip.mp4")) as container:
            assert sum(1 for _ in container.decode(video=0)) == 5


def test_a_generate_job_loads_the_vae_in_the_dtype_it_asks_for(tiny_checkpoint, tmp_path):
    fields = {"prompt": "a red ball", "num_frames": 5, "height": 32, "width": 64, "steps": 2}
    job = run(GenerateRequest(**fields, model=tiny_checkpoint, vae_dtype="bfloat16", out=tmp_path / "c.mp4"))
    record = json.loads((tmp_path / "c.json").read_text())
    assert record["provenance"]["vae_dtype"] == "bfloat16" and record["provenance"]["dtype"] == "float32"
    assert job.frames.shape == (5, 32, 64, 3)
    plain = run(GenerateRequest(**fields, model=tiny_checkpoint))
    # the same latents, decoded by a bf16 VAE: close to the float32 decode, not equal
    assert np.abs(job.frames.astype(int) - plain.frames.astype(int)).mean() < 2.0


def test_edit_runs_through_run_with_progress_and_writes_one_record(tiny_checkpoint, tmp_path):
    from flowstudio.pipeline import WanVideoPipeline

    source = tmp_path / "source.mp4"
    write_video(source, gradient_clip(), fps=8)
    pipe = WanVideoPipeline.from_pretrained(tiny_checkpoint, device="cpu")
    calls = []
    request = EditRequest(source=source, **PROMPTS, method="flowedit", steps=2, out=tmp_path / "e.mp4")
    job = run(request, model=pipe, progress=lambda *a: calls.append(a))
    assert calls == [(1, 2, "denoise"), (2, 2, "denoise")] and job.model_calls == 2
    record = json.loads((tmp_path / "e.json").read_text())
    assert record["request"]["flowedit"] is None and record["settings"]["flowedit"]["n_max"] is None
    assert record["info"]["size"] == [5, 32, 64] and record["provenance"]["device"] == "cpu"
    assert record["provenance"]["vae_dtype"] == "float32"
    with pytest.raises(InputError, match="is also an input"):  # checked before the model runs
        run(request.model_copy(update={"out": source}), model=pipe)


def test_a_validation_error_in_a_command_is_one_line_naming_the_field(tiny_checkpoint, tmp_path):
    source = tmp_path / "s.mp4"
    write_video(source, gradient_clip(), fps=8)
    args = ["edit", str(source), "-s", "a", "-t", "b", "--model", str(tiny_checkpoint), "--n-avg", "0"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "e.mp4")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: flowedit.n_avg must be a whole number >= 1, got 0"), result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mp4"]
