"""DMD2 on the trainer (flowstudio.distill.train) with a tiny random checkpoint: which parameters each
update moves, the TI2V first frame, resume, the run folder's guard and the export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flowstudio.distill.train import DistillConfig, distill, prepare
from flowstudio.errors import InputError
from flowstudio.train import Budget, StepContext


@pytest.fixture
def tiny(tiny_checkpoint) -> Path:
    return tiny_checkpoint  # read only: the teacher is copied, never written


def _config(tiny: Path, **changes) -> DistillConfig:
    settings = dict(
        teacher=str(tiny),
        student_steps=4,
        steps=2,
        batch=2,
        critic_steps=2,
        num_prompts=6,
        num_frames=5,
        height=32,
        width=32,
        checkpoint_every=1,
        ema_decay=0.5,
        i2v_prob=0.5,
        lr=1e-3,
        critic_lr=1e-3,
    )
    settings.update(changes)
    return DistillConfig(**settings)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


def test_a_critic_update_and_a_generator_update_move_exactly_their_own_weights(tiny, tmp_path):
    run = prepare(_config(tiny), tmp_path / "run", progress=False)
    objective = run.objective
    teacher, student, critic = objective.teacher.transformer, objective.student, objective.critic
    trained = {k for k, p in critic.named_parameters() if p.requires_grad}
    before = {"teacher": _snapshot(teacher), "student": _snapshot(student), "critic": _snapshot(critic)}
    ctx, batch = StepContext(run.trainer, 0), run.make_batch(0)

    ctx.accumulate("critic", [batch], lambda m, b: objective.critic_loss(m, b, 0))
    assert _changed(before["teacher"], teacher) == set() and _changed(before["student"], student) == set()
    moved = _changed(before["critic"], critic)
    assert moved and moved <= trained and len(moved) > 0.8 * len(trained)

    after_critic = _snapshot(critic)
    terms = ctx.accumulate("generator", [batch], objective.generator_loss)
    assert torch.isfinite(terms["loss"]) and float(terms["dm_grad"]) > 0
    assert _changed(before["teacher"], teacher) == set() and _changed(after_critic, critic) == set()
    moved = _changed(before["student"], student)
    assert moved and all(k.startswith("student.") for k in moved), "only the student, not its EMA"
    assert len(moved) > 0.8 * len(trained)

    student.update_ema()  # decay 0.5: halfway from the teacher's weights to the student's
    for name, value in student.ema.state_dict().items():
        torch.testing.assert_close(
            value, 0.5 * (before["student"][f"ema.{name}"] + student.student.state_dict()[name])
        )


def test_image_to_video_rows_keep_the_clean_first_frame_at_every_level(tiny, tmp_path):
    run = prepare(_config(tiny, i2v_prob=1.0), tmp_path / "run", progress=False)
    objective, batch = run.objective, run.make_batch(0)
    batch.stop[:] = 3  # three student steps of backward simulation
    noise = batch.noise
    mask = objective._mask(batch, tuple(noise.shape))
    x, level = objective.student_inputs(batch, batch.stop, noise, mask, objective._pin(batch, mask))
    first = objective.bank.first_frames[batch.rows]
    torch.testing.assert_close(x[:, :, :1], first, rtol=0, atol=0)
    assert not torch.equal(x[:, :, 1:], noise[:, :, 1:]), "the other frames were simulated"
    torch.testing.assert_close(level, objective.sigmas.float()[3].expand(2))


def test_a_run_stopped_and_resumed_equals_an_uninterrupted_run(tiny, tmp_path):
    whole = distill(_config(tiny), tmp_path / "whole", progress=False)
    first = distill(_config(tiny), tmp_path / "parts", budget=Budget(max_steps=1), progress=False)
    assert not first.finished and first.step == 1
    rest = distill(_config(tiny), tmp_path / "parts", progress=False)
    assert rest.finished and rest.history == whole.history
    one, two = (torch.load(p / "state.pt", weights_only=False)["models"] for p in (whole.out, rest.out))
    for part in ("generator", "critic"):
        for name, value in one[part].items():
            assert torch.equal(value, two[part][name]), f"{part}.{name} differs after resume"


def test_a_run_can_start_from_another_runs_student_and_critic(tiny, tmp_path):
    """``init_from``: a new run (here with the GAN term on) takes the first run's student, EMA and
    critic, with fresh optimizers and a fresh head; resuming the new run resumes it, not the source."""
    first = distill(_config(tiny), tmp_path / "first", progress=False)
    saved = torch.load(first.out / "state.pt", weights_only=False)["models"]
    config = _config(tiny, gan_weight=0.5, gan_lr=2e-3, seed=1, init_from=str(first.out))
    run = prepare(config, tmp_path / "second", progress=False)
    lrs = {name: part.optimizer.param_groups[0]["lr"] for name, part in run.trainer.parts.items()}
    assert lrs == {"generator": 1e-3, "critic": 1e-3, "disc": 2e-3}  # the head on its own rate
    for part, module in (("generator", run.objective.student), ("critic", run.objective.critic)):
        for name, value in module.state_dict().items():
            assert torch.equal(value, saved[part][name]), f"{part}.{name} not taken from the first run"
    assert all(not o.state for o in (p.optimizer for p in run.trainer.parts.values()))
    whole = distill(config, tmp_path / "whole", progress=False)
    part = distill(config, tmp_path / "second", budget=Budget(max_steps=1), progress=False)
    rest = distill(config, tmp_path / "second", progress=False)  # resumes its own state, not the source's
    assert part.step == 1 and rest.finished and rest.history == whole.history
    one, two = (torch.load(p / "state.pt", weights_only=False)["models"] for p in (whole.out, rest.out))
    for name, value in one["generator"].items():
        assert torch.equal(value, two["generator"][name])
    with pytest.raises(InputError, match="not found"):
        prepare(_config(tiny, init_from=str(tmp_path / "nowhere")), tmp_path / "third", progress=False)
    with pytest.raises(InputError, match="does not fit"):
        prepare(_config(tiny, init_from=str(first.out), ema_decay=0.0), tmp_path / "fourth", progress=False)


def test_two_processes_distil_as_one_process_with_the_whole_batch(tiny, tmp_path):
    """DDP on two CPU processes (torchrun, gloo), one row each: the same losses and weights as one
    process with both rows. Needs every draw to be per row (the backward simulation's re-noising
    too) and every loss a mean over rows; the main process alone writes the run's shared files."""
    import os
    import socket
    import subprocess
    import sys

    import yaml

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in _config(tiny).__dict__.items() if k != "extra"}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "flowstudio.cli"]
    command += ["distill", "--config", str(config), "--out", str(tmp_path / "two")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("student:") == 1  # one report, from the main process
    one = distill(_config(tiny), tmp_path / "one", progress=False)
    import json

    two_history = json.loads((tmp_path / "two" / "history.json").read_text())
    for key, values in one.history.items():
        np.testing.assert_allclose(two_history[key], values, rtol=1e-4, err_msg=key)
    single, double = (
        torch.load(p / "state.pt", weights_only=False)["models"] for p in (one.out, tmp_path / "two")
    )
    teacher = prepare(_config(tiny), tmp_path / "teacher", progress=False).objective.critic.state_dict()
    for part in ("generator", "critic"):
        moved = 0.0
        for name, value in single[part].items():
            torch.testing.assert_close(double[part][name], value, rtol=0, atol=2e-4, msg=f"{part}.{name}")
            bare = name.split(".", 1)[1] if name.split(".", 1)[0] in ("student", "ema") else name
            if bare in teacher:
                moved = max(moved, float((value - teacher[bare]).abs().max()))
        assert moved > 1e-3, f"{part} did not train: the comparison would be empty"


def test_a_run_folder_refuses_other_settings(tiny, tmp_path):
    distill(_config(tiny, steps=1), tmp_path / "run", progress=False)
    distill(_config(tiny, steps=2), tmp_path / "run", progress=False)  # training on: allowed
    with pytest.raises(InputError, match="other settings.*guidance_scale"):
        distill(_config(tiny, steps=2, guidance_scale=3.0), tmp_path / "run", progress=False)


def test_a_run_from_before_a_new_setting_resumes_at_its_default(tiny, tmp_path):
    distill(_config(tiny, steps=1), tmp_path / "run", progress=False)
    stored = tmp_path / "run" / "config.json"
    older = {
        k: v for k, v in json.loads(stored.read_text()).items() if k not in ("lr_decay_fraction", "lr_floor")
    }
    stored.write_text(json.dumps(older))  # as written before those keys existed
    with pytest.raises(InputError, match="other settings.*lr_decay_fraction"):
        distill(_config(tiny, steps=2, lr_decay_fraction=0.5), tmp_path / "run", progress=False)
    result = distill(_config(tiny, steps=2), tmp_path / "run", progress=False)  # the default: same run
    assert result.finished and result.step == 2


def test_bad_settings_are_refused_with_what_to_do(tiny, tmp_path):
    with pytest.raises(InputError, match="first frames"):
        _config(tiny, prompts=str(tmp_path / "p.txt"))
    with pytest.raises(InputError, match="critic_steps"):
        _config(tiny, critic_steps=0)
    with pytest.raises(InputError, match="steps must be a whole number.*'many'"):
        _config(tiny, steps="many")  # as a YAML typo would give
    with pytest.raises(InputError, match="lr must be a number"):
        _config(tiny, lr="1e-5x")
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(InputError, match="no prompts"):
        distill(
            _config(tiny, prompts=str(tmp_path / "empty.txt"), i2v_prob=0.0), tmp_path / "run", progress=False
        )
    with pytest.raises(InputError, match="num_frames"):
        distill(_config(tiny, num_frames=6), tmp_path / "run2", progress=False)


def test_the_exported_student_runs_in_stock_wan_pipeline_as_in_flowstudio(tiny, tmp_path):
    """The export is a diffusers folder: stock ``WanPipeline`` loads it with the student's stochastic
    scheduler, and its samples equal flowstudio's ``dmd`` sampler on the same folder and seed."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    from flowstudio.distill.export import student_settings
    from flowstudio.pipeline import GenerationSettings, WanVideoPipeline

    result = distill(_config(tiny, steps=1), tmp_path / "run", progress=False)
    folder = result.out / "student"
    settings = student_settings(folder)
    assert settings == {"steps": 4, "guidance_scale": 1.0, "shift": 5.0, "sampler": "dmd"}
    stock = WanPipeline.from_pretrained(folder)
    assert (
        isinstance(stock.scheduler, FlowMatchEulerDiscreteScheduler)
        and stock.scheduler.config.stochastic_sampling
    )
    size = {"num_frames": 5, "height": 32, "width": 32}
    # stock WanPipeline draws the re-noising from torch's global RNG (it does not pass its generator to
    # scheduler.step); flowstudio continues the stream of the generator that drew the starting noise
    continued = torch.Generator().manual_seed(3)
    torch.randn((1, 48, 2, 2, 2), generator=continued)
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(continued.get_state())
        theirs = stock(
            prompt="a red box",
            negative_prompt="",
            num_inference_steps=4,
            guidance_scale=1.0,
            generator=torch.Generator().manual_seed(3),
            output_type="latent",
            **size,
        ).frames
    ours = (
        WanVideoPipeline.from_pretrained(folder)
        .generate(
            GenerationSettings(
                prompt="a red box", steps=4, guidance_scale=1.0, shift=5.0, solver="dmd", seed=3, **size
            ),
            progress=False,
        )
        .latents
    )
    assert ours.shape == theirs.shape and (ours - theirs).abs().max().item() < 1e-5
    # the exported weights are the EMA's, not the last student's
    state = torch.load(result.out / "state.pt", weights_only=False)["models"]["generator"]
    exported = stock.transformer.state_dict()
    name = next(k for k in exported if k.endswith("weight") and exported[k].dim() == 2)
    torch.testing.assert_close(exported[name], state[f"ema.{name}"].to(exported[name].dtype))
    assert not torch.equal(state[f"ema.{name}"], state[f"student.{name}"])


def test_a_students_own_settings_fill_what_a_request_leaves_unset(tmp_path):
    from flowstudio.distill.export import STUDENT_FILE
    from flowstudio.jobs.generation import generation_settings, with_student_defaults
    from flowstudio.jobs.requests import GenerateRequest

    folder = tmp_path / "student"
    folder.mkdir()
    (folder / STUDENT_FILE).write_text('{"steps": 4, "guidance_scale": 1.0, "shift": 3.0, "sampler": "dmd"}')
    plain = with_student_defaults(GenerateRequest(prompt="a red box"), folder)
    assert (plain.steps, plain.guidance_scale, plain.shift, plain.solver) == (4, 1.0, 3.0, "dmd")
    assert generation_settings(plain).solver == "dmd"
    chosen = with_student_defaults(GenerateRequest(prompt="a red box", steps=8, solver="euler"), folder)
    assert (chosen.steps, chosen.solver, chosen.guidance_scale) == (8, "euler", 1.0)
    teacher = with_student_defaults(GenerateRequest(prompt="a red box"), tmp_path)  # no distill.json
    assert (teacher.steps, teacher.solver, teacher.guidance_scale) == (30, "unipc", 5.0)


def test_the_stochastic_sampler_refuses_to_invert_or_edit():
    from flowstudio.core.stochastic import StochasticSolver
    from flowstudio.edit.settings import EditSettings

    with pytest.raises(ValueError, match="cannot invert"):
        StochasticSolver(seed=0).invert_step(lambda x, s: x, torch.zeros(1), torch.tensor([1.0, 0.0]), 0)
    with pytest.raises(InputError, match="'dmd'.*deterministic"):
        EditSettings(source_prompt="a", target_prompt="b", generation_solver="dmd")


def test_the_distill_command_resumes_exports_and_the_student_generates(tiny, tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from flowstudio.cli import app

    config = tmp_path / "run.yaml"
    settings = {k: v for k, v in _config(tiny, steps=2).__dict__.items() if k != "extra"}
    config.write_text(yaml.safe_dump(settings))
    runner, out = CliRunner(), tmp_path / "run"
    first = runner.invoke(app, ["distill", "--config", str(config), "--out", str(out), "--max-steps", "1"])
    assert first.exit_code == 0, first.output
    assert "stopped at step 1 of 2" in first.output and not (out / "student").exists()
    second = runner.invoke(app, ["distill", "--config", str(config), "--out", str(out)])
    assert second.exit_code == 0 and (out / "student" / "distill.json").is_file(), second.output
    video = tmp_path / "student.mp4"
    made = runner.invoke(
        app,
        ["generate", "-p", "a red box", "--model", str(out / "student"), "--frames", "5"]
        + ["--height", "32", "--width", "32", "-o", str(video)],
    )
    assert made.exit_code == 0, made.output
    record = json.loads(video.with_suffix(".json").read_text())
    assert (
        record["settings"]["steps"],
        record["settings"]["solver"],
        record["settings"]["guidance_scale"],
    ) == (
        4,
        "dmd",
        1.0,
    )
    assert record["model_calls"] == 4  # one call per student step: no CFG
    # the few-step editor: FlowEdit on the student's levels, no guidance, unless given
    from flowstudio.edit import edit

    clip = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    edited = edit(clip, source_prompt="a red box", target_prompt="a blue box", model=str(out / "student"))
    s = edited.settings
    assert (s.method, s.grid, s.steps, s.source_guidance, s.target_guidance) == (
        "flowedit",
        "student",
        4,
        1.0,
        1.0,
    )
    assert edited.row_evaluations == 2 * 4  # the source and target rows at each of the 4 levels
    given = edit(
        clip, source_prompt="a red box", target_prompt="a blue box", model=str(out / "student"), steps=2
    )
    assert (given.settings.steps, given.settings.grid) == (2, "student")
    later = runner.invoke(  # a second stage from the finished run: --init-from on the command line
        app, ["distill", "--config", str(config), "-o", str(tmp_path / "later"), "--init-from", str(out)]
        + ["--max-steps", "1"],
    )  # fmt: skip
    assert later.exit_code == 0, later.output
    assert json.loads((tmp_path / "later" / "config.json").read_text())["init_from"] == str(out)
    nowhere = str(tmp_path / "x")
    lost = runner.invoke(
        app, ["distill", "--config", str(config), "-o", str(tmp_path / "lost"), "--init-from", nowhere]
    )
    assert lost.exit_code == 2 and "init_from" in lost.output and "not found" in lost.output
    config.write_text(yaml.safe_dump({**settings, "critic_step": 3}))
    bad = runner.invoke(app, ["distill", "--config", str(config), "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "unknown keys ['critic_step']" in bad.output


def test_a_served_student_samples_with_its_own_settings(tiny, tmp_path):
    """Deploying a student: ``flowstudio serve --model STUDENT`` runs a generate job that names no
    steps, guidance or sampler with the student's (4 steps, guidance 1, ``dmd``: 4 transformer calls)."""
    import json
    import time

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from flowstudio.serve.app import create_app
    from flowstudio.serve.worker import load_pipeline

    result = distill(_config(tiny, steps=1), tmp_path / "run", progress=False)
    pipeline = load_pipeline(result.out / "student")
    from flowstudio.video import write_video

    clip = tmp_path / "clip.mp4"
    write_video(clip, np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8), fps=8)
    generate = {"kind": "generate", "prompt": "a red box", "num_frames": 5, "height": 32, "width": 32}
    edit = {"kind": "edit", "source_prompt": "a red box", "target_prompt": "a blue box"}
    records = []
    with TestClient(create_app(tmp_path / "jobs.sqlite", load_model=lambda: pipeline)) as client:
        for submitted in (
            client.post("/v1/jobs", json=generate),
            client.post("/v1/jobs", data={"request": json.dumps(edit)}, files={"source": clip.open("rb")}),
        ):
            assert submitted.status_code == 202, submitted.text
            deadline = time.monotonic() + 120
            while (job := client.get(f"/v1/jobs/{submitted.json()['id']}").json())["status"] in (
                "queued",
                "running",
            ):
                assert time.monotonic() < deadline, job
                time.sleep(0.05)
            assert job["status"] == "succeeded", job
            records.append(json.loads(client.get(job["files"]["record"]).content))
    generated, edited = records
    settings = generated["settings"]
    assert (settings["steps"], settings["guidance_scale"], settings["solver"]) == (4, 1.0, "dmd")
    assert generated["model_calls"] == 4
    # the few-step editor: FlowEdit on the student's 4 levels without guidance
    settings = edited["settings"]
    assert (settings["method"], settings["grid"], settings["steps"]) == ("flowedit", "student", 4)
    assert (settings["source_guidance"], settings["target_guidance"]) == (1.0, 1.0)


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (Path(__file__).parents[1] / "configs" / "distill").glob("*.yaml"))
)
def test_the_shipped_distillation_configs_load(name):
    from flowstudio.models import TOY_MODEL

    config = DistillConfig.from_yaml(Path(__file__).parents[1] / "configs" / "distill" / name)
    assert Path(config.teacher).resolve() == TOY_MODEL.resolve()
    assert config.student_steps == int(name[4])


def test_tensorboard_gets_the_losses_sample_grids_and_the_readers_accuracy(tiny, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = _config(tiny, steps=2, sample_every=1, eval_every=2, eval_prompts=2)
    result = distill(config, tmp_path / "run", progress=False)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/generator", "train/critic", "train/dm_grad", "lr/generator", "lr/critic"} <= scalars
    assert {"eval/color", "eval/shape", "eval/background"} <= scalars
    assert [e.step for e in events.Images("samples")] == [1, 2]
    accuracy = events.Scalars("eval/color")[0].value
    assert accuracy in (0.0, 0.5, 1.0)  # 2 prompts, read from real generations
    assert len(result.history["generator"]) == 2


def test_the_gan_head_learns_on_its_own_updates_and_pushes_the_student(tiny, tmp_path):
    """DMD2's GAN option: the head's update moves only the head; the generator's update (DM + GAN
    terms) moves only the student; the head's first-frame tokens of I2V rows carry no weight."""
    from flowstudio.distill.gan import token_weights

    run = prepare(_config(tiny, gan_weight=0.5, i2v_prob=0.5), tmp_path / "run", progress=False)
    objective = run.objective
    assert objective.bank.real_latents is not None and objective.bank.real_latents.shape[2] == 2
    head, student, critic = objective.head, objective.student, objective.critic
    before = {"head": _snapshot(head), "student": _snapshot(student), "critic": _snapshot(critic)}
    ctx, batch = StepContext(run.trainer, 0), run.make_batch(0)
    ctx.accumulate("critic", [batch], lambda m, b: objective.critic_loss(m, b, 0))
    after_critic = _snapshot(critic)
    loss = ctx.accumulate("disc", [batch], lambda m, b: objective.disc_loss(m, b, 0))["loss"]
    assert float(loss) == pytest.approx(2 * 0.6931, abs=0.3)  # ~log 2 per side at the start
    assert _changed(before["head"], head) and _changed(before["student"], student) == set()
    assert _changed(after_critic, critic) == set()
    after_head = _snapshot(head)
    terms = ctx.accumulate("generator", [batch], objective.generator_loss)
    assert float(terms["gan_generator"]) > 0 and _changed(after_head, head) == set()
    assert _changed(before["student"], student)
    mask = torch.ones(2, 1, 2, 2, 2)
    mask[1, :, 0] = 0
    weights = token_weights(mask, (1, 2, 2))
    assert weights.tolist() == [[1.0, 1.0], [0.0, 1.0]]
    with pytest.raises(InputError, match="real clips"):
        _config(tiny, gan_weight=0.5, i2v_prob=0.0, prompts=str(tmp_path / "p.txt"))


def test_the_gan_term_can_read_its_own_noise_levels(tiny, tmp_path):
    """``gan_shift``: the GAN term's levels are the loss levels' uniform draws warped by another shift;
    at 1 they are the uniform draws themselves (DMD2's), at the run's shift they are the loss levels."""
    from flowstudio.core.flow import shift_sigmas

    u = torch.tensor([0.02, 0.3, 0.5, 0.9, 0.98], dtype=torch.float64)
    drawn = shift_sigmas(u, 5.0).float()
    uniform = prepare(_config(tiny, gan_weight=0.5, shift=5.0, gan_shift=1.0), tmp_path / "u", progress=False)
    assert torch.allclose(uniform.objective.gan_levels(drawn), u.float(), atol=1e-6)
    same = prepare(_config(tiny, gan_weight=0.5, shift=5.0), tmp_path / "s", progress=False)
    assert torch.equal(same.objective.gan_levels(drawn), drawn)
    with pytest.raises(InputError, match="gan_shift"):
        _config(tiny, gan_weight=0.5, gan_shift=0.0)


def test_a_lora_student_trains_only_its_adapters_and_exports_merged_weights(tiny, tmp_path):
    """lora_rank > 0: the base weights stay the teacher's, the adapters move, and the exported folder
    is a plain transformer whose outputs equal the adapted (EMA) student's."""
    from diffusers import WanTransformer3DModel

    config = _config(tiny, steps=1, lora_rank=4, lr=1e-2)
    run = prepare(config, tmp_path / "run", progress=False)
    student = run.objective.student.student
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    base = {n: p.detach().clone() for n, p in student.named_parameters() if not p.requires_grad}
    result = distill(config, tmp_path / "run", progress=False)
    assert result.finished
    ema = run.objective.student  # an untrained copy of the run's modules: the trained state is loaded below
    exported = WanTransformer3DModel.from_pretrained(result.out / "student" / "transformer")
    assert not any("lora_" in k for k in exported.state_dict())
    state = torch.load(result.out / "state.pt", weights_only=False)["models"]["generator"]
    moved = [k for k in state if k.startswith("student.") and "lora_" in k and "lora_B" in k]
    assert moved and any(float(state[k].abs().max()) > 0 for k in moved), "lora_B starts at 0 and must move"
    for name, value in base.items():
        assert torch.equal(state[f"student.{name}"], value), f"base weight {name} moved"
    # the export equals the EMA student with its adapters applied
    ema.load_state_dict(state)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 48, 2, 2, 2, generator=g)
    text = torch.randn(1, 8, exported.config.text_dim, generator=g)
    t = torch.tensor([500.0])
    with torch.no_grad():
        adapted = ema.ema(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
        plain = exported(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
    torch.testing.assert_close(plain, adapted, rtol=1e-4, atol=1e-5)


def test_export_evaluated_writes_a_runnable_student_per_evaluation_and_names_the_best(tiny, tmp_path):
    from flowstudio.distill.export import student_settings

    config = _config(tiny, steps=3, eval_every=2, eval_prompts=2, export_evaluated=True)
    distill(config, tmp_path / "run", progress=False)
    folder = tmp_path / "run" / "evaluated"
    index = json.loads((folder / "index.json").read_text())
    assert [row["step"] for row in index["students"]] == [2, 3]  # every eval_every, and the last step
    for row in index["students"]:
        assert set(row["accuracy"]) == {"color", "shape", "background"}
        assert row["mean"] == pytest.approx(sum(row["accuracy"].values()) / 3)
        assert student_settings(folder / row["folder"])["steps"] == 4
    best = max(index["students"], key=lambda row: (row["mean"], -row["step"]))
    assert index["best"] == best["folder"] and index["eval_prompts"] == 2
    # the last evaluated student is the exported one
    final = (tmp_path / "run" / "student" / "transformer").glob("*.safetensors")
    last = (folder / "step_000003" / "transformer").glob("*.safetensors")
    assert [p.read_bytes() for p in final] == [p.read_bytes() for p in last]


def test_record_evaluated_replaces_a_redone_step_and_prefers_the_earlier_on_a_tie(tmp_path):
    from flowstudio.distill.train import record_evaluated

    same = {"color": 0.5, "shape": 0.5, "background": 1.0}
    record_evaluated(tmp_path, 50, same, 8)
    record_evaluated(tmp_path, 100, {"color": 0.25, "shape": 0.5, "background": 0.5}, 8)
    index = record_evaluated(tmp_path, 100, same, 8)  # a resumed run evaluates step 100 again
    assert [(row["step"], row["mean"]) for row in index["students"]] == [(50, 2 / 3), (100, 2 / 3)]
    assert index["best"] == "step_000050"


def test_lr_decay_fraction_lowers_every_rate_over_the_tail(tiny, tmp_path):
    run = prepare(_config(tiny, steps=10, gan_weight=0.5, gan_lr=1e-4, lr_decay_fraction=0.5), tmp_path / "r")
    parts = run.trainer.parts
    for name, base in (("generator", run.config.lr), ("critic", run.config.critic_lr), ("disc", 1e-4)):
        rates = [parts[name].lr(step) for step in range(10)]
        assert rates[:5] == [base] * 5 and rates[5] == pytest.approx(base)
        assert all(a > b for a, b in zip(rates[5:], rates[6:], strict=False))
        assert rates[-1] > 0.1 * base  # the floor is reached at the end of the run, step 10
    constant = prepare(_config(tiny, steps=10), tmp_path / "c").trainer.parts["generator"]
    assert {constant.lr(step) for step in range(10)} == {run.config.lr}
    with pytest.raises(InputError, match="lr_floor"):
        _config(tiny, lr_floor=1.5)


def test_prompt_weights_oversample_the_captions_that_hold_a_phrase(tmp_path):
    from flowstudio.distill.prompts import PromptBank
    from flowstudio.distill.train import make_batch_fn, prompt_draw_weights

    prompts = ["red cup on a plain background", "blue box, Plain backdrop", "ring on wood", "vase, sky"]
    weights = prompt_draw_weights(prompts, {"plain back": 3.0, "backdrop": 2.0})
    assert weights.tolist() == [3.0, 6.0, 1.0, 1.0]  # case-insensitive; matching phrases multiply
    with pytest.raises(InputError, match="no prompt.*'plian'.*spelling"):
        prompt_draw_weights(prompts, {"plian": 3.0})

    bank = PromptBank(prompts, torch.zeros(4, 2, 3), torch.zeros(1, 2, 3), None)
    shape = (1, 4, 2, 2, 2)
    plain = DistillConfig(teacher="t", batch=8, i2v_prob=0.0)
    weighted = DistillConfig(teacher="t", batch=8, i2v_prob=0.0, prompt_weights={"plain": 4.0})
    uniform_rows = torch.cat([make_batch_fn(plain, bank, shape, 5.0)(k).rows for k in range(400)])
    weighted_rows = torch.cat([make_batch_fn(weighted, bank, shape, 5.0)(k).rows for k in range(400)])
    share = lambda rows: float((rows < 2).double().mean())  # noqa: E731  rows 0 and 1 say "plain"
    assert abs(share(uniform_rows) - 0.5) < 0.04
    assert abs(share(weighted_rows) - 0.8) < 0.04  # 2 x 4 of 2 x 4 + 2
    # without weights the draw is the one runs have always made (a resumed run sees the same batches)
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([plain.seed, 17, 5]).generate_state(1)[0]))
    assert torch.equal(make_batch_fn(plain, bank, shape, 5.0)(5).rows, torch.randint(0, 4, (8,), generator=g))


def test_bad_prompt_weights_are_refused():
    with pytest.raises(InputError, match="prompt_weights must map"):
        DistillConfig(teacher="t", prompt_weights=["plain"])
    with pytest.raises(InputError, match="prompt_weights\\['plain'\\].*> 0"):
        DistillConfig(teacher="t", prompt_weights={"plain": 0})
