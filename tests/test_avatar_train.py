"""DualForce training loop: a tiny overfit lowers the loss; resume continues from the checkpoint step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowstudio.avatar.model.config import load_config, toy_config
from flowstudio.avatar.model.dualforce import DualForceModel
from flowstudio.avatar.training.train import SyntheticTalkingDataset, TrainConfig, train, training_step
from tests.avatar_fixtures import tiny_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _eval_loss(model: DualForceModel, dataset: SyntheticTalkingDataset) -> float:
    """Loss on fixed data and fixed noise (seeded), so that only the weights change between calls."""
    with torch.no_grad():
        terms = [
            training_step(model, dataset.batch([0, 1]), dataset.layout, torch.Generator().manual_seed(s))
            for s in range(4)
        ]
    return sum(float(t.video + t.struct) for t in terms) / len(terms)


def _config(out: Path, steps: int) -> TrainConfig:
    return tiny_run(out, steps, num_chunks=1, lr=3e-3, save_every=3, seed=0)


def test_tiny_overfit_lowers_the_loss(tmp_path: Path):
    cfg = toy_config()
    dataset = SyntheticTalkingDataset(cfg, num_chunks=1, size=2)
    torch.manual_seed(0)
    before = _eval_loss(DualForceModel(cfg).eval(), dataset)  # train() seeds the same initial weights
    records = train(cfg, _config(tmp_path / "run", 12), resume=False, dataset=dataset)
    after = _eval_loss(DualForceModel.from_pretrained(tmp_path / "run" / "final"), dataset)
    assert len(records) == 12 and all(torch.isfinite(torch.tensor(r["total"])) for r in records)
    assert after < 0.8 * before, f"eval loss {before:.3f} -> {after:.3f}"
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 12


def test_resume_continues_from_checkpoint(tmp_path: Path):
    cfg = toy_config()
    full = train(cfg, _config(tmp_path / "a", 6), resume=False)
    first = train(cfg, _config(tmp_path / "b", 3), resume=False)  # stops at step 3, checkpoint step-3
    assert (tmp_path / "b" / "checkpoints" / "step-3").is_dir()
    rest = train(cfg, _config(tmp_path / "b", 6), resume=True)
    assert [r["step"] for r in rest] == [4.0, 5.0, 6.0]
    for ours, reference in zip(first + rest, full, strict=True):
        assert ours["total"] == pytest.approx(reference["total"], rel=1e-5, abs=1e-6)


def test_run_yaml_is_valid():
    cfg, rest = load_config(Path(__file__).parents[1] / "configs" / "dualforce" / "toy.yaml")
    assert cfg.name == "toy" and cfg.forcing.struct_range == (0.0, 0.7)
    train = TrainConfig.from_dict(rest["train"])
    assert train.dataset == "talkingshapes" and train.num_chunks > cfg.forcing.window_chunks


def test_mova_lite_run_yaml_is_valid():
    cfg, rest = load_config(Path(__file__).parents[1] / "configs" / "dualforce" / "mova_lite.yaml")
    assert cfg.name == "mova-lite" and cfg.bridge_layers == tuple(range(8)) and cfg.video.num_layers == 28
    assert TrainConfig.from_dict(rest["train"]).mixed_precision == "bf16"


def test_training_calls_the_prepared_wrapper_not_the_bare_model(tmp_path: Path, monkeypatch):
    """DDP synchronises gradients only through its own forward: every training forward must go through
    what accelerate prepared. A stand-in wrapper (no ``config``, like DDP) counts the calls."""
    import accelerate

    calls = []

    class Wrapper(torch.nn.Module):
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            calls.append(1)
            return self.module(*args, **kwargs)

    prepare = accelerate.Accelerator.prepare

    def wrapping_prepare(self, *objects):
        prepared = prepare(self, *objects)
        return tuple(Wrapper(p) if isinstance(p, DualForceModel) else p for p in prepared)

    monkeypatch.setattr(accelerate.Accelerator, "prepare", wrapping_prepare)
    records = train(toy_config(), _config(tmp_path / "run", 2), resume=False)
    assert len(records) == 2 and len(calls) == 2


@pytest.mark.parametrize("bad", [1.5, -0.1, True])
def test_bad_lr_decay_fraction_is_refused(bad):
    from flowstudio.errors import InputError

    with pytest.raises(InputError, match="lr_decay_fraction"):
        TrainConfig.from_dict({"lr_decay_fraction": bad})


def test_an_ema_run_ships_the_average_and_any_checkpoint_exports(tmp_path: Path):
    """With train.ema_decay the run's ``final`` is the EMA and ``final-raw`` the last weights;
    `flowstudio avatar export` turns each checkpoint into a folder (EMA or, with --raw, the weights)
    that loads and matches the run's own."""
    from typer.testing import CliRunner

    from flowstudio.cli import app

    cfg = toy_config()
    run = tmp_path / "run"
    train(cfg, tiny_run(run, 6, num_chunks=1, lr=3e-3, save_every=3, seed=0, ema_decay=0.5), resume=False)
    average = DualForceModel.from_pretrained(run / "final").state_dict()
    last = DualForceModel.from_pretrained(run / "final-raw").state_dict()
    moved = [k for k in average if not torch.equal(average[k], last[k])]
    assert moved, "the EMA equals the last weights: nothing was averaged"

    runner = CliRunner()
    for extra, expected in (([], average), (["--raw"], last)):
        folder = tmp_path / f"export{len(extra)}"
        result = runner.invoke(app, ["avatar", "export", str(run), str(folder), *extra])
        assert result.exit_code == 0, result.output
        exported = DualForceModel.from_pretrained(folder).state_dict()
        assert all(torch.equal(exported[k], expected[k]) for k in expected)

    earlier = runner.invoke(app, ["avatar", "export", str(run), str(tmp_path / "e3"), "--step", "3"])
    assert earlier.exit_code == 0, earlier.output
    assert not torch.equal(
        DualForceModel.from_pretrained(tmp_path / "e3").state_dict()[moved[0]], average[moved[0]]
    )
    missing = runner.invoke(app, ["avatar", "export", str(run), str(tmp_path / "e4"), "--step", "4"])
    assert missing.exit_code != 0 and "has steps [3, 6]" in missing.output


@pytest.mark.parametrize("bad", [1.0, -0.1])
def test_bad_ema_decay_is_refused(bad):
    from flowstudio.errors import InputError

    with pytest.raises(InputError, match="ema_decay"):
        TrainConfig.from_dict({"ema_decay": bad})
