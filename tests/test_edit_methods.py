"""Editing methods on the tiny checkpoint: FlowEdit, the inversion editors, reschedule (stated properties)."""

from __future__ import annotations

import pytest
import torch
from edit_fixtures import encode_clip, gradient_clip, load_pipe, one_thread, run_edit

from flowstudio.edit import FlowEditConfig, RescheduleConfig

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)


pipe = pytest.fixture(scope="module")(load_pipe)
clip = pytest.fixture(scope="module")(gradient_clip)
x_src = pytest.fixture(scope="module")(encode_clip)
_edit = run_edit


@pytest.mark.parametrize("n_avg", [1, 2])
def test_flowedit_identical_prompts_returns_the_source_exactly(pipe, clip, x_src, n_avg):
    """target = source (prompt, CFG, first frame) => v_tgt - v_src == 0 => z stays x_src, bit-exact."""
    r = _edit(
        pipe,
        clip,
        method="flowedit",
        target_prompt="a red ball",
        source_guidance=3.0,
        target_guidance=3.0,
        flowedit=FlowEditConfig(n_avg=n_avg),
    )
    assert torch.equal(r.latents, x_src), (r.latents - x_src).abs().max()


def test_flowedit_n_max_zero_returns_the_source(pipe, clip, x_src):
    r = _edit(pipe, clip, method="flowedit", flowedit=FlowEditConfig(n_max=0))
    assert torch.equal(r.latents, x_src) and r.model_calls == 0


def test_flowedit_edits_with_one_batched_call_per_step(pipe, clip, x_src):
    """Different prompts move the latent; source+target with CFG = 4 rows in 1 forward per step."""
    r = _edit(
        pipe,
        clip,
        method="flowedit",
        source_guidance=2.0,
        target_guidance=4.0,
        steps=4,
        flowedit=FlowEditConfig(n_max=3, n_min=1),
        first_frame="source",
    )
    assert not torch.equal(r.latents, x_src)
    # 2 difference steps (1 batched call of 4 rows each) + 1 regular target step (2 rows).
    assert r.model_calls == 3 and r.row_evaluations == 2 * 4 + 2, (r.model_calls, r.row_evaluations)
    assert torch.equal(r.latents[:, :, 0], x_src[:, :, 0])  # source first frame pinned


def test_baseline_with_euler_fixed_point_inversion_reconstructs(pipe, clip, x_src):
    """Identical prompts, no CFG, Euler both ways: the fixed-point inversion is undone by the Euler steps.

    The error is the fixed-point residual, so it falls with the iterations (at a rate set by the random
    model's Lipschitz constant: the seed-0 tiny checkpoint needs about 20 at 4 steps).
    """
    errors = []
    for iters in (0, 20):
        r = _edit(
            pipe,
            clip,
            target_prompt="a red ball",
            source_guidance=1.0,
            target_guidance=1.0,
            steps=4,
            inversion_solver="euler",
            generation_solver="euler",
            fixed_point_iters=iters,
        )
        errors.append((r.latents - x_src).abs().max().item())
    assert errors[1] < 0.05 and errors[1] < errors[0] / 10, errors


def test_baseline_defaults_are_dpmpp_inversion_and_unipc(pipe, clip):
    r = _edit(pipe, clip, source_guidance=1.0, target_guidance=3.0, steps=3)
    assert r.settings.method == "inversion"
    # inversion: 1 source row per step; edit: target cond + uncond per step.
    assert r.info["inversion_row_evaluations"] == 3 and r.info["edit_row_evaluations"] == 6


@pytest.mark.parametrize(("method", "inversion_rows"), [("rf-solver", 6), ("fireflow", 4)])
def test_midpoint_editors_cost(pipe, clip, x_src, method, inversion_rows):
    """RF-Solver: 2 calls per step; FireFlow: N + 1 calls for N steps (midpoint velocity reused)."""
    r = _edit(pipe, clip, method=method, target_prompt="a red ball", source_guidance=1.0, target_guidance=1.0)
    assert r.info["inversion_row_evaluations"] == inversion_rows
    assert r.info["edit_row_evaluations"] == inversion_rows
    assert (r.latents - x_src).abs().max() < 0.5  # reconstructs roughly at 3 steps


def test_reschedule_strength_zero_returns_the_source(pipe, clip, x_src):
    r = _edit(pipe, clip, reschedule=RescheduleConfig(strength=0.0))
    assert torch.equal(r.latents, x_src) and r.model_calls == 0


def test_reschedule_partial_inversion_runs_fewer_steps(pipe, clip):
    full = _edit(pipe, clip, steps=6, source_guidance=1.0, target_guidance=1.0)
    part = _edit(
        pipe,
        clip,
        steps=6,
        source_guidance=1.0,
        target_guidance=1.0,
        reschedule=RescheduleConfig(strength=0.5),
    )
    assert 0 < part.model_calls < full.model_calls


def test_sdedit_noise_mode_is_seeded(pipe, clip):
    a = _edit(pipe, clip, reschedule=RescheduleConfig(strength=0.6, mode="noise"), seed=3)
    b = _edit(pipe, clip, reschedule=RescheduleConfig(strength=0.6, mode="noise"), seed=3)
    c = _edit(pipe, clip, reschedule=RescheduleConfig(strength=0.6, mode="noise"), seed=4)
    assert torch.equal(a.latents, b.latents) and not torch.equal(a.latents, c.latents)
    assert a.info["inversion_row_evaluations"] == 0
