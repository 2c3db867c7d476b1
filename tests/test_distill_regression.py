"""DMD's paired regression term (flowstudio.distill.regression) on a tiny teacher."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowstudio.distill import dmd, regression
from flowstudio.distill.train import DistillConfig, distill, prepare
from flowstudio.errors import InputError
from flowstudio.train import Budget, StepContext


@pytest.fixture
def tiny(tiny_checkpoint) -> Path:
    return tiny_checkpoint


def _config(tiny: Path, **changes) -> DistillConfig:
    settings = dict(
        teacher=str(tiny), student_steps=4, steps=2, batch=2, critic_steps=1, num_prompts=6, num_frames=5,
        height=32, width=32, checkpoint_every=1, ema_decay=0.5, i2v_prob=0.5, lr=1e-3, critic_lr=1e-3,
        regression_weight=1.0, regression_pairs=3, regression_steps=3,
    )  # fmt: skip
    settings.update(changes)
    return DistillConfig(**settings)


def test_pair_rows_take_the_prompts_with_a_phrase_in_bank_order_and_cycle():
    prompts = ["red cup, plain background", "ring on wood", "box, Plain backdrop", "vase, sky"]
    assert regression.pair_rows(prompts, ["plain back"], 5).tolist() == [0, 2, 0, 2, 0]
    assert regression.pair_rows(prompts, None, 5).tolist() == [0, 1, 2, 3, 0]
    with pytest.raises(InputError, match="no prompt.*'plian'.*spelling"):
        regression.pair_rows(prompts, ["plian"], 2)


def test_the_pairs_are_the_teachers_samples_from_their_own_noise(tiny, tmp_path):
    from flowstudio.denoiser import Conditioning

    run = prepare(_config(tiny), tmp_path / "run", progress=False)
    pairs = run.objective.pairs
    assert len(pairs) == 3 and (tmp_path / "run" / "regression_pairs.pt").is_file()
    assert pairs.settings["steps"] == 3 and pairs.settings["solver"] == "unipc"
    assert pairs.settings["integer_timesteps"] is True  # as `generate` feeds UniPC
    # pair 1 again, by hand: the same noise stream, then the teacher's solver with CFG
    from flowstudio.pipeline import WanVideoPipeline

    pipe = WanVideoPipeline.from_pretrained(tiny, device="cpu")
    bank = run.objective.bank
    noise = regression.pair_noise(run.config.seed, 1, tuple(pairs.noise.shape[1:]))
    torch.testing.assert_close(pairs.noise[1], noise, rtol=0, atol=0)
    row = int(pairs.rows[1])
    cond = Conditioning(bank.embeds[row : row + 1], bank.negative, 5.0, integer_timesteps=True)
    expected = pipe.solve(noise[None], cond, steps=3, shift=run.shift, solver="unipc").x
    torch.testing.assert_close(pairs.target[1], expected[0].float(), rtol=1e-5, atol=1e-5)
    assert not torch.equal(pairs.noise[0], pairs.noise[1])


def test_the_term_feeds_the_pair_noise_at_the_first_level_and_the_renoised_sample_after(tiny, tmp_path):
    run = prepare(_config(tiny), tmp_path / "run", progress=False)
    objective, pairs = run.objective, run.objective.pairs
    seen = {}
    original = objective._x0

    def spy(denoiser, x, sigma, text, mask):
        seen.update(x=x.clone(), sigma=sigma.clone(), text=text.clone())
        return original(denoiser, x, sigma, text, mask)

    objective._x0 = spy
    draw = {
        "index": torch.tensor([2, 0]),
        "stop": torch.tensor([0, 3]),
        "noise": torch.randn(pairs.noise[:2].shape),
    }
    objective.regression_term(objective.student.student, draw)
    torch.testing.assert_close(seen["x"][0], pairs.noise[2], rtol=0, atol=0)
    sigma = objective.sigmas.float()[3]
    torch.testing.assert_close(seen["x"][1], (1 - sigma) * pairs.target[0] + sigma * draw["noise"][1])
    torch.testing.assert_close(seen["sigma"], torch.stack([objective.sigmas.float()[0], sigma]))
    torch.testing.assert_close(seen["text"], objective.bank.embeds[pairs.rows[[2, 0]]])


def test_a_step_on_the_term_moves_only_the_student_toward_the_teachers_samples(tiny, tmp_path):
    run = prepare(_config(tiny), tmp_path / "run", progress=False)
    objective = run.objective
    critic_before = {k: v.clone() for k, v in objective.critic.state_dict().items()}
    draw = run.make_batch(0).regression
    assert set(draw) == {"index", "stop", "noise"} and draw["index"].max() < 3

    def loss() -> float:
        with torch.no_grad():
            return float(objective.regression_term(objective.student.student, draw))

    before = loss()
    ctx = StepContext(run.trainer, 0)
    for _ in range(3):
        ctx.accumulate("generator", [draw], lambda m, d: {"loss": objective.regression_term(m, d)})
    assert loss() < before
    assert all(torch.equal(v, critic_before[k]) for k, v in objective.critic.state_dict().items())


def test_the_generator_loss_holds_the_term_and_a_resumed_run_equals_a_whole_one(tiny, tmp_path):
    whole = distill(_config(tiny), tmp_path / "whole", progress=False)
    assert "regression" in whole.history and all(v > 0 for v in whole.history["regression"])
    first = distill(_config(tiny), tmp_path / "parts", budget=Budget(max_steps=1), progress=False)
    assert not first.finished
    made = (tmp_path / "parts" / "regression_pairs.pt").stat().st_mtime_ns
    rest = distill(_config(tiny), tmp_path / "parts", progress=False)
    assert rest.finished and rest.history == whole.history
    assert (tmp_path / "parts" / "regression_pairs.pt").stat().st_mtime_ns == made, "read back, not remade"


def test_a_run_without_the_term_draws_what_it_always_drew(tiny, tmp_path):
    off = prepare(_config(tiny, regression_weight=0.0), tmp_path / "off", progress=False)
    on = prepare(_config(tiny), tmp_path / "on", progress=False)
    a, b = off.make_batch(4), on.make_batch(4)
    assert a.regression is None and off.objective.pairs is None
    assert not (tmp_path / "off" / "regression_pairs.pt").exists()
    for name in ("rows", "i2v", "stop", "noise", "loss_sigma", "loss_noise", "seed"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_bad_regression_settings_are_refused(tiny, tmp_path):
    with pytest.raises(InputError, match="regression_weight must be >= 0"):
        _config(tiny, regression_weight=-1.0)
    with pytest.raises(InputError, match="regression_solver 'dmd'.*euler"):
        _config(tiny, regression_solver="dmd")
    with pytest.raises(InputError, match="regression_phrases must be a list"):
        _config(tiny, regression_phrases="plain")
    with pytest.raises(InputError, match="no prompt.*'plian'"):
        prepare(_config(tiny, regression_phrases=["plian"]), tmp_path / "run", progress=False)


def test_the_loss_is_a_mean_over_rows_of_each_rows_mean_squared_error():
    x0, target = torch.zeros(2, 1, 2), torch.tensor([[[1.0, 1.0]], [[2.0, 0.0]]])
    assert float(regression.regression_loss(x0, target)) == pytest.approx((1.0 + 2.0) / 2)
    assert dmd.noised(target, torch.zeros_like(target), torch.tensor([0.0, 0.0])).equal(target)
