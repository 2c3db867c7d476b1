"""The one trainer (flowstudio.train): resume is bit-identical, 2 processes train as 1 with twice the
batch, accumulation equals the whole batch, several parts per step, TensorBoard, precision, FSDP config."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from train_toy_task import make_batch, make_model, run

from flowstudio.errors import InputError
from flowstudio.train import Budget, LatestFile, Part, Trainer, TrainerConfig, resolve_mixed_precision

ROOT = Path(__file__).parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _weights(trainer: Trainer, name: str = "model") -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.parts[name].model.state_dict().items()}


def test_an_interrupted_run_resumes_bit_identical(tmp_path):
    """Stopped by its budget after 3 of 6 steps and run again, a run ends with the uninterrupted run's
    weights and losses bit for bit: optimizer, LR schedule (a function of the step), batch stream (a
    function of the micro-step) and global RNG (dropout draws from it) all restored."""
    straight, whole = run(tmp_path / "a", steps=6, grad_accum=2, dropout=0.3)
    torch.manual_seed(123)  # whatever happened in between, the checkpoint restores the random state
    _, first = run(tmp_path / "b", steps=6, grad_accum=2, dropout=0.3, budget=Budget(max_steps=3))
    assert not first.finished and first.step == 3 and len(first.history["loss"]) == 3
    torch.manual_seed(321)
    resumed, second = run(tmp_path / "b", steps=6, grad_accum=2, dropout=0.3)
    assert second.finished and second.start == 3
    assert second.history == whole.history
    for name, value in _weights(straight).items():
        assert torch.equal(value, _weights(resumed)[name]), f"{name} differs after resume"
    saved = torch.load(tmp_path / "b" / "state.pt", weights_only=False)
    assert saved["step"] == 6 and saved["format"] == 2 and len(saved["rng"]) == 1


def test_sigterm_finishes_the_step_saves_and_resumes_as_if_never_stopped(tmp_path):
    """A SIGTERM (a scheduler's preemption) or Ctrl-C during step 2 lets step 2 finish, saves the state
    at step 3 and returns unfinished; run again, the run ends as the uninterrupted one. A second signal
    goes to the handler that was there before, which fit restores when it returns."""
    import os
    import signal

    straight, whole = run(tmp_path / "a", steps=6)
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: seen.append(number))
    try:

        def batches(i: int) -> dict[str, torch.Tensor]:
            if i == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            if i == 3:
                raise AssertionError("step 3 ran after the signal")
            return make_batch(i, 4)

        _, first = run(tmp_path / "b", steps=6, batch_fn=batches)
        assert not first.finished and first.step == 3 and first.interrupted == "SIGTERM"
        assert seen == []  # the first signal was the trainer's
        saved = torch.load(tmp_path / "b" / "state.pt", weights_only=False)
        assert saved["step"] == 3

        def twice(i: int) -> dict[str, torch.Tensor]:
            if i == 4:
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGTERM)  # asked twice: the previous handler's turn
            return make_batch(i, 4)

        _, second = run(tmp_path / "c", steps=6, batch_fn=twice)
        assert second.step == 5 and second.interrupted == "SIGTERM" and seen == [signal.SIGTERM]
    finally:
        restored = signal.signal(signal.SIGTERM, previous)
    assert callable(restored) and restored.__name__ == "<lambda>"  # fit put the test's handler back
    resumed, rest = run(tmp_path / "b", steps=6)
    assert rest.finished and rest.start == 3 and rest.history == whole.history
    for name, value in _weights(straight).items():
        assert torch.equal(value, _weights(resumed)[name]), f"{name} differs after resume"


def test_gradient_accumulation_equals_the_whole_batch(tmp_path):
    """2 micro-batches of 2 rows per step (batches 2k, 2k+1) train as one batch of their 4 rows."""

    def whole(k: int) -> dict[str, torch.Tensor]:
        a, b = make_batch(2 * k, 2), make_batch(2 * k + 1, 2)
        return {key: torch.cat([a[key], b[key]]) for key in a}

    accumulated, acc_run = run(tmp_path / "acc", rows=2, grad_accum=2)
    single, one_run = run(tmp_path / "one", batch_fn=whole)
    np.testing.assert_allclose(acc_run.history["loss"], one_run.history["loss"], rtol=1e-5)
    for name, value in _weights(single).items():
        torch.testing.assert_close(_weights(accumulated)[name], value, rtol=1e-5, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_as_one_process_with_twice_the_batch(tmp_path):
    """Two CPU processes (torchrun, gloo), 2 rows each, give one process's losses and weights with the
    same 4 rows: the batch is split by rows and DDP averages the gradients (the loss is a row mean)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(ROOT / "tests" / "train_toy_task.py"),
        str(tmp_path / "two"),
        "--rows",
        "4",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = torch.load(tmp_path / "two" / "result.pt", weights_only=False)
    assert two["processes"] == 2 and two["backend"] == "gloo"
    single, one = run(tmp_path / "one", rows=4)
    np.testing.assert_allclose(two["history"]["loss"], one.history["loss"], rtol=1e-5)
    for name, value in _weights(single).items():
        torch.testing.assert_close(two["weights"][name], value, rtol=1e-5, atol=1e-6)


def _dmd_shaped(tmp_path: Path, steps: int, critic_grads_from_generator: bool, budget: Budget | None = None):
    """Generator + critic, 3 critic updates per generator update (the shape of DMD, not DMD)."""
    generator, critic = make_model(), make_model()
    parts = {
        "generator": Part(generator, torch.optim.AdamW(generator.parameters(), lr=0.01)),
        "critic": Part(critic, torch.optim.AdamW(critic.parameters(), lr=0.02)),
    }
    trainer = Trainer(
        TrainerConfig(name="dmd-shaped", steps=steps, checkpoint_every=1, progress=False), parts, cpu=True
    )

    def critic_loss(module, batch):
        return (module(batch["x"]) - batch["y"]).pow(2).mean()

    def generator_loss(module, batch):
        target = trainer.models["critic"](batch["x"])  # through the critic: it gets gradients too
        target = target if critic_grads_from_generator else target.detach()
        return (module(batch["x"]) - target).pow(2).mean()

    def step(ctx, batches):
        for _ in range(3):
            critic_terms = ctx.accumulate("critic", batches, critic_loss)
        generator_terms = ctx.accumulate("generator", batches, generator_loss)
        return {"critic": critic_terms["loss"], "generator": generator_terms["loss"]}

    result = trainer.fit(step, make_batch, LatestFile(tmp_path / "state.pt"), budget=budget)
    return trainer, result


def test_a_step_may_update_several_parts_several_times(tmp_path):
    """3 critic updates and 1 generator update per step; gradients the generator's loss leaves on the
    critic never reach a critic update; both parts resume bit-identical."""
    trainer, result = _dmd_shaped(tmp_path / "a", 4, critic_grads_from_generator=True)
    steps = {
        name: int(next(iter(opt.state_dict()["state"].values()))["step"])
        for name, opt in trainer.optimizers.items()
    }
    assert steps == {"generator": 4, "critic": 12}
    assert set(result.history) == {"critic", "generator"} and len(result.history["critic"]) == 4
    clean, _ = _dmd_shaped(tmp_path / "b", 4, critic_grads_from_generator=False)
    for name, value in _weights(clean, "critic").items():
        assert torch.equal(value, _weights(trainer, "critic")[name]), "generator-loss gradients leaked"
    _dmd_shaped(tmp_path / "c", 4, True, budget=Budget(max_steps=2))
    resumed, again = _dmd_shaped(tmp_path / "c", 4, True)
    assert again.start == 2 and again.history == result.history
    for part in ("generator", "critic"):
        for name, value in _weights(trainer, part).items():
            assert torch.equal(value, _weights(resumed, part)[name]), f"{part}.{name} differs after resume"


def test_tensorboard_gets_losses_lr_evaluations_and_sample_grids(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    image = np.zeros((8, 12, 3), np.uint8)
    _, result = run(
        tmp_path / "run",
        steps=4,
        logdir=tmp_path / "tb",
        eval_every=2,
        sample_every=2,
        evaluate=lambda: 1.5,
        sample=lambda step: image + step,
    )
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    tags = events.Tags()
    assert {"train/loss", "lr/model", "eval/held_out"} <= set(tags["scalars"]) and "samples" in tags["images"]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(result.history["loss"])
    assert [e.step for e in events.Scalars("eval/held_out")] == [2, 4]
    assert [e.value for e in events.Scalars("lr/model")] == pytest.approx([0.05 / (1 + k) for k in range(4)])
    assert [e.step for e in events.Images("samples")] == [2, 4]
    assert result.evals == [[2, 1.5], [4, 1.5]]
    assert sorted(p.name for p in (tmp_path / "tb" / "samples").glob("*.png")) == [
        "samples-0000002.png",
        "samples-0000004.png",
    ]


def test_mixed_precision_follows_the_device(monkeypatch):
    assert resolve_mixed_precision("auto", cpu=True) == "no"
    assert resolve_mixed_precision("bf16", cpu=True) == "bf16"  # asked for: kept
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_mixed_precision("auto", cpu=False) == "bf16"
    assert resolve_mixed_precision("auto", cpu=True) == "no"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_mixed_precision("auto", cpu=False) == "no"
    with pytest.raises(InputError, match="mixed_precision"):
        TrainerConfig(name="x", steps=1, mixed_precision="fp8")


@pytest.mark.parametrize("path", ["configs/accelerate/fsdp.yaml", "configs/dualforce/accelerate_fsdp.yaml"])
def test_fsdp_accelerate_configs_are_accepted(path):
    """The FSDP launch configs parse as accelerate configs, and the layer classes they wrap exist."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(ROOT / path))
    assert config.distributed_type == DistributedType.FSDP and config.mixed_precision == "bf16"
    import diffusers.models.transformers.transformer_wan as wan

    import flowstudio.avatar.model.bridge as bridge

    for name in config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","):
        assert hasattr(wan, name) or hasattr(bridge, name), f"{path}: no layer class {name}"


def test_cosine_tail_is_constant_then_falls_to_its_floor():
    from flowstudio.train import cosine_tail

    lr = cosine_tail(1e-3, 100, 0.3)
    assert [lr(s) for s in (0, 50, 70)] == [1e-3, 1e-3, 1e-3]
    tail = [lr(s) for s in range(70, 101)]
    assert all(a >= b for a, b in zip(tail, tail[1:], strict=False))  # monotone down
    assert lr(85) == pytest.approx(0.55e-3)  # half way: the mean of base and floor
    assert lr(100) == pytest.approx(1e-4)
    assert [cosine_tail(2e-4, 10, 0.0)(s) for s in range(11)] == [2e-4] * 11
    with pytest.raises(ValueError, match="decay_fraction"):
        cosine_tail(1e-3, 100, 1.5)


def test_a_batch_is_split_by_rows_through_dicts_lists_and_dataclasses():
    from dataclasses import dataclass

    from flowstudio.train import shard_batch

    @dataclass
    class Rows:
        x: torch.Tensor
        parts: list
        seed: int

    batch = Rows(torch.arange(4), [{"y": torch.arange(8).view(4, 2)}], 7)
    second = shard_batch(batch, 1, 2)
    assert isinstance(second, Rows) and second.seed == 7
    assert second.x.tolist() == [2, 3] and second.parts[0]["y"].tolist() == [[4, 5], [6, 7]]
    assert shard_batch(batch, 0, 1) is batch
    with pytest.raises(InputError, match="cannot be split over 3"):
        shard_batch(batch, 0, 3)


def test_a_run_that_asked_for_fsdp_but_got_ddp_is_refused(monkeypatch):
    """accelerate turns an FSDP config into DDP on CPU processes, without a word; the trainer says so."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from flowstudio.train.loop import check_fsdp_granted

    ddp = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU, device=torch.device("cpu"))
    fsdp = SimpleNamespace(distributed_type=DistributedType.FSDP, device=torch.device("cuda", 0))
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    check_fsdp_granted(ddp)  # not asked: DDP is what was wanted
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    check_fsdp_granted(fsdp)
    with pytest.raises(InputError, match="asks for FSDP.*MULTI_CPU.*--cpu --num_processes"):
        check_fsdp_granted(ddp)


def test_the_weights_ema_follows_its_recurrence_and_resumes_bit_identical(tmp_path):
    """With ``ema_decay`` the trainer keeps ema <- d * ema + (1 - d) * weights after every step, from
    the starting weights; the checkpoint holds it, and a run stopped and resumed ends with the
    uninterrupted run's average bit for bit."""
    decay = 0.7
    start = {k: v.clone() for k, v in make_model().state_dict().items()}
    seen: list[dict[str, torch.Tensor]] = []

    def keep(trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        seen.append(_weights(trainer))

    straight, _ = run(tmp_path / "a", steps=6, ema_decay=decay, on_step=keep)
    assert len(seen) == 6
    expected = start
    for weights in seen:
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    average = straight.ema("model").state_dict()
    for name, value in expected.items():
        assert torch.allclose(average[name], value, atol=1e-6), name
        assert not torch.allclose(average[name], seen[-1][name], atol=1e-4), f"{name}: no averaging"
    assert straight.ema("other") is None
    saved = torch.load(tmp_path / "a" / "state.pt", weights_only=False)
    assert set(saved["ema"]) == {"model"}

    _, first = run(tmp_path / "b", steps=6, ema_decay=decay, budget=Budget(max_steps=3))
    assert not first.finished
    resumed, _ = run(tmp_path / "b", steps=6, ema_decay=decay)
    for name, value in average.items():
        assert torch.equal(value, resumed.ema("model").state_dict()[name]), f"{name} differs after resume"


def test_an_ema_decay_outside_zero_one_is_refused():
    model = make_model()
    with pytest.raises(InputError, match="ema_decay"):
        Part(model, torch.optim.SGD(model.parameters(), lr=0.1), ema_decay=1.0)
