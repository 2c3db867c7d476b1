"""The math of DMD2 (flowstudio.distill.dmd), checked on small tensors and a 1-D mixture."""

from __future__ import annotations

import math

import pytest
import torch

from flowstudio.core.flow import classifier_free_guidance, shift_sigmas
from flowstudio.distill import dmd

MODES, SPREAD = (-2.0, 2.0), 0.3


def _posterior_x0(x_t: torch.Tensor, t: torch.Tensor, means, spread: float) -> torch.Tensor:
    """E[x0 | x_t] for x0 ~ equal mixture of N(m, spread^2), x_t = (1 - t) x0 + t eps (exact)."""
    a = (1 - t).view(-1, 1)
    var = a**2 * spread**2 + t.view(-1, 1) ** 2
    logs = torch.stack([-((x_t - a * m) ** 2) / (2 * var) for m in means])
    weights = torch.softmax(logs, dim=0)
    posts = torch.stack([m + a * spread**2 / var * (x_t - a * m) for m in means])
    return (weights * posts).sum(0)


def _dm_step(mu: torch.Tensor, spread: float, rows: int, g: torch.Generator, dims: int = 64) -> torch.Tensor:
    """The DMD loss of a student ``x = mu + spread z`` against the two-mode teacher, with the exact fake
    score of the student's own distribution N(mu, spread^2). A sample is ``dims`` independent
    coordinates (as a latent is many), so the per-sample normaliser is a mean, as it is on videos."""
    x = (mu + spread * torch.randn(rows, dims, generator=g)).clone()
    t = dmd.sample_sigmas(rows, g, shift=1.0)
    x_t = dmd.noised(x.detach(), torch.randn(rows, dims, generator=g), t)
    real = _posterior_x0(x_t, t, MODES, SPREAD)
    fake = _posterior_x0(x_t, t, (float(mu.detach()),), spread)
    return dmd.dmd_loss(x, dmd.dm_gradient(x, real, fake))


@pytest.mark.parametrize("start, mode", [(0.5, 2.0), (-0.7, -2.0)])
def test_the_student_moves_toward_the_teachers_nearest_mode(start, mode):
    """Gradient sign: the first gradient on the student's location points toward the nearer of the
    teacher's two modes, and SGD on the DMD loss takes it most of the way there and keeps it there
    (mode-seeking: not to the mixture's mean 0). It settles short of the mode (about 1.4): a one-
    Gaussian student cannot match the mixture, and at high noise both blur toward 0."""
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor(start, requires_grad=True)
    _dm_step(mu, 0.3, 2048, g).backward()  # the expected gradient: many samples and levels
    assert mu.grad is not None and math.copysign(1, -float(mu.grad)) == math.copysign(1, mode)
    optimizer = torch.optim.SGD([mu], lr=0.5)
    path = []
    for _ in range(200):
        optimizer.zero_grad()
        _dm_step(mu, 0.3, 16, g).backward()
        optimizer.step()
        path.append(float(mu.detach()))
    settled = sum(path[-100:]) / 100 * math.copysign(1, mode)  # on the mode's side, as a distance from 0
    assert 1.0 < settled < 2.2, path[-100:]
    assert min(p * math.copysign(1, mode) for p in path[-100:]) > 0.5


def test_the_normaliser_is_the_mean_distance_to_the_teacher_per_sample():
    g = torch.Generator().manual_seed(1)
    x, real, fake = (torch.randn(3, 2, 4, generator=g) for _ in range(3))
    grad = dmd.dm_gradient(x, real, fake)
    expected = (fake - real) / (x - real).abs().mean(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(grad, expected)
    # a sample twice as far from the teacher gets half the step; the other rows are untouched
    far = x.clone()
    far[0] = real[0] + 2 * (x[0] - real[0])
    again = dmd.dm_gradient(far, real, fake)
    torch.testing.assert_close(again[0], grad[0] / 2)
    torch.testing.assert_close(again[1:], grad[1:])
    assert dmd.dm_gradient(x.half(), real, fake).dtype == torch.float32


def test_the_dmd_loss_backpropagates_the_gradient():
    """d loss / d x = grad / (number of unpinned elements): the student's sample moves down ``grad``."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, generator=g, requires_grad=True)
    grad = torch.randn(2, 3, 4, generator=g)
    dmd.dmd_loss(x, grad).backward()
    torch.testing.assert_close(x.grad, grad / grad.numel())


def test_the_cfg_forms_agree():
    """CFG on velocities (the form used), on x0 predictions and on noise predictions give one x0."""
    g = torch.Generator().manual_seed(3)
    x_t, v_c, v_u = (torch.randn(2, 4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    sigma, scale = torch.tensor([0.3, 0.8], dtype=torch.float64), 4.5
    s = sigma.view(-1, 1, 1)
    velocity_form = dmd.cfg_x0(x_t, sigma, v_c, v_u, scale)
    x0_form = classifier_free_guidance(x_t - s * v_c, x_t - s * v_u, scale)
    noise_c, noise_u = x_t + (1 - s) * v_c, x_t + (1 - s) * v_u
    noise = classifier_free_guidance(noise_c, noise_u, scale)
    noise_form = (x_t - s * noise) / (1 - s)  # x_t = (1 - s) x0 + s noise
    torch.testing.assert_close(velocity_form, x0_form)
    torch.testing.assert_close(velocity_form, noise_form)


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_the_student_levels_are_the_shift_warped_list_of_diffusers_scheduler(steps):
    sigmas = dmd.student_sigmas(steps, 5.0)
    assert len(sigmas) == steps and float(sigmas[0]) == pytest.approx(1.0)
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    # ends at the warped uniform level shift(1 / steps), as Self-Forcing's warped list does
    last = float(shift_sigmas(torch.tensor(1.0 / steps, dtype=torch.float64), 5.0))
    assert float(sigmas[-1]) == pytest.approx(last, abs=1e-6)
    # the scheduler an exported student carries gives the same list to stock diffusers
    torch.testing.assert_close(dmd.student_scheduler(steps, 5.0).sigmas[:-1].double(), sigmas)
    # without a shift the levels are the uniform grid itself
    plain = dmd.student_sigmas(steps, 1.0)
    torch.testing.assert_close(
        plain, torch.linspace(1, 0, steps + 1, dtype=torch.float64)[:-1], atol=1e-6, rtol=0
    )


def test_warping_moves_levels_toward_noise_as_the_shift_grows():
    assert bool((dmd.student_sigmas(4, 5.0)[1:] > dmd.student_sigmas(4, 3.0)[1:]).all())
    assert float(dmd.sample_sigmas(10000, torch.Generator().manual_seed(0), 5.0).mean()) > 0.7
    with pytest.raises(ValueError):
        dmd.student_sigmas(0, 5.0)


def test_pinned_positions_are_left_out_of_the_gradient_and_the_loss():
    """TI2V: latent frame 0 is the clean first frame; nothing there may move the student."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 4, 2, 2, generator=g, requires_grad=True)
    real, fake = torch.randn(2, 3, 4, 2, 2, generator=g), torch.randn(2, 3, 4, 2, 2, generator=g)
    mask = torch.ones(2, 1, 4, 2, 2)
    mask[0, :, 0] = 0  # row 0 is an I2V row
    grad = dmd.dm_gradient(x, real, fake, mask)
    loss = dmd.dmd_loss(x, grad, mask)
    moved_real, moved_fake, moved_x = real.clone(), fake.clone(), x.detach().clone()
    moved_real[0, :, 0] += 5.0
    moved_fake[0, :, 0] -= 3.0
    moved_x[0, :, 0] += 7.0
    again = dmd.dm_gradient(moved_x, moved_real, moved_fake, mask)
    torch.testing.assert_close(again, grad)
    torch.testing.assert_close(dmd.dmd_loss(moved_x, again, mask), loss)
    loss.backward()
    assert float(x.grad[0, :, 0].abs().max()) == 0.0 and float(x.grad[1, :, 0].abs().max()) > 0
    v, x0, noise = (torch.randn(2, 3, 4, 2, 2, generator=g) for _ in range(3))
    base = dmd.flow_matching_loss(v, x0, noise, mask)
    v[0, :, 0] += 9.0
    assert float(dmd.flow_matching_loss(v, x0, noise, mask)) == pytest.approx(float(base))


def test_backward_simulation_runs_each_row_to_its_own_level():
    """Row b takes stop[b] steps of the stochastic sampler; a row with stop 0 stays pure noise."""
    sigmas = dmd.student_sigmas(4, 5.0)
    noise = torch.randn(3, 2, generator=torch.Generator().manual_seed(5))
    calls = []

    def x0_fn(x, sigma, rows):
        calls.append((rows.tolist(), round(float(sigma[0]), 4)))
        return torch.full_like(x, 0.5)  # a student that always predicts 0.5

    out = dmd.backward_simulate(x0_fn, noise, sigmas, torch.tensor([0, 2, 3]), torch.tensor([7, 8, 9]))
    torch.testing.assert_close(out[0], noise[0])
    assert [c[0] for c in calls] == [[1, 2], [1, 2], [2]]
    # rows 1 and 2 were last re-noised to their own level around the prediction 0.5, each from the
    # stream of its own seed (row 1 drew twice, row 2 three times)
    row1, row2 = torch.Generator().manual_seed(8), torch.Generator().manual_seed(9)
    draws = {
        1: [torch.randn(2, generator=row1) for _ in range(2)],
        2: [torch.randn(2, generator=row2) for _ in range(3)],
    }
    s2, s3 = float(sigmas[2]), float(sigmas[3])
    torch.testing.assert_close(out[1], (1 - s2) * 0.5 + s2 * draws[1][1])
    torch.testing.assert_close(out[2], (1 - s3) * 0.5 + s3 * draws[2][2])
