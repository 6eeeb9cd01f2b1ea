"""Diffusion samplers (MRSynthLib.methods.translators.samplers): exactness with oracle denoisers, schedules, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from MRSynthLib.methods.translators.samplers import (
    SamplingConfig,
    Schedule,
    ddim_sample,
    euler_sample,
    sample,
    seeded_normal,
    time_grid,
)


def _oracle(x0: np.ndarray, schedule: Schedule):
    """The perfect denoiser for a single known ``x0``: the velocity that points exactly at it."""

    def velocity(x, t):
        eps = (x - schedule.alpha(t) * x0) / schedule.sigma(t)
        return schedule.velocity(x0, eps, t)

    return velocity


def _gaussian_oracle(variance: float, schedule: Schedule):
    """The exact posterior-mean denoiser for data ``x0 ~ N(0, variance)`` (independent elements)."""

    def velocity(x, t):
        a, s = schedule.alpha(t), schedule.sigma(t)
        x0 = a * variance * x / (a * a * variance + s * s)
        eps = (x - a * x0) / s
        return schedule.velocity(x0, eps, t)

    return velocity


@pytest.mark.parametrize("kind", ["cosine", "linear"])
@pytest.mark.parametrize("steps", [1, 3, 20])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_with_oracle_recovers_x0_exactly(kind, steps, eta):
    schedule = Schedule(kind)
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, (2, 4, 6, 6, 6)).astype(np.float32)
    start = rng.standard_normal(x0.shape).astype(np.float32)
    out = ddim_sample(_oracle(x0, schedule), start, schedule, steps, eta,
                      step_noise=lambda i: seeded_normal(x0.shape, 1, i))
    np.testing.assert_allclose(out, x0, atol=2e-5)


def test_euler_is_exact_for_rectified_flow_and_converges_for_cosine():
    rng = np.random.default_rng(1)
    x0 = rng.uniform(-1, 1, (1, 3, 5, 5, 5)).astype(np.float32)
    start = rng.standard_normal(x0.shape).astype(np.float32)
    linear = Schedule("linear")
    np.testing.assert_allclose(euler_sample(_oracle(x0, linear), start, linear, 4), x0, atol=2e-5)
    cosine = Schedule("cosine")
    errors = [np.abs(euler_sample(_oracle(x0, cosine), start, cosine, n) - x0).max() for n in (4, 16, 64)]
    assert errors[0] > errors[1] > errors[2]  # first-order method on a curved path: converges, not exact
    assert errors[2] < 0.05


@pytest.mark.parametrize("kind, sampler, eta", [("cosine", "ddim", 0.0), ("cosine", "ddim", 1.0),
                                                ("linear", "euler", 0.0), ("linear", "ddim", 0.0)])
def test_samplers_reproduce_the_data_distribution_with_the_exact_denoiser(kind, sampler, eta):
    """Gaussian data N(0, 0.25) and the exact posterior-mean denoiser: the sample std approaches 0.5 as the
    step count grows (discretisation error only)."""
    schedule = Schedule(kind)
    start = seeded_normal((20000,), 3)

    def std_error(steps):
        config = SamplingConfig(schedule=kind, sampler=sampler, steps=steps, eta=eta)
        out = sample(config, _gaussian_oracle(0.25, schedule), start,
                     step_noise=lambda i: seeded_normal((20000,), 4, i))
        assert abs(out.mean()) < 0.02
        return abs(out.std() - 0.5)

    coarse, fine = std_error(25), std_error(400)
    assert fine < 0.012 and fine < coarse


def test_split_inverts_noising_for_both_schedules():
    rng = np.random.default_rng(2)
    x0, eps = rng.standard_normal((2, 3, 4)).astype(np.float32)
    for kind in ("cosine", "linear"):
        schedule = Schedule(kind)
        for t in (0.05, 0.5, 0.97):
            x = schedule.noised(x0, eps, t)
            got_x0, got_eps = schedule.split(x, schedule.velocity(x0, eps, t), t)
            np.testing.assert_allclose(got_x0, x0, atol=1e-5)
            np.testing.assert_allclose(got_eps, eps, atol=1e-5)
        assert schedule.alpha(0.0) == 1.0 and schedule.sigma(0.0) == 0.0
        assert abs(schedule.alpha(1.0)) < 1e-12 and schedule.sigma(1.0) == 1.0


def test_time_grid_runs_from_noise_to_data():
    grid = time_grid(5)
    assert grid.shape == (6,) and grid[0] == 1.0 and grid[-1] == 0.0
    assert np.all(np.diff(grid) < 0)
    np.testing.assert_allclose(np.diff(grid), -0.2)
    with pytest.raises(ValueError, match="steps"):
        time_grid(0)


def test_sampling_is_deterministic_under_a_seed():
    schedule = Schedule("cosine")
    shape = (2, 4, 4, 4, 4)
    net = _gaussian_oracle(0.3, schedule)
    config = SamplingConfig(steps=6, eta=0.7)

    def run(seed):
        return sample(config, net, seeded_normal(shape, seed, 0), step_noise=lambda i: seeded_normal(shape, seed, 1, i))

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.allclose(run(5), run(6))
    np.testing.assert_array_equal(seeded_normal((3, 3), 1, 2), seeded_normal((3, 3), 1, 2))
    assert not np.array_equal(seeded_normal((3, 3), 1, 2), seeded_normal((3, 3), 1, 3))


def test_eta_zero_needs_no_noise_and_eta_positive_does():
    schedule = Schedule("cosine")
    x = np.zeros((1, 2), np.float32)
    ddim_sample(lambda x, t: x, x, schedule, 3, eta=0.0)
    with pytest.raises(ValueError, match="step_noise"):
        ddim_sample(lambda x, t: x, x, schedule, 3, eta=0.5)


def test_progress_is_called_once_per_step():
    seen = []
    euler_sample(lambda x, t: np.zeros_like(x), np.zeros((1, 2), np.float32), Schedule("linear"), 7, seen.append)
    assert seen == list(range(7))


def test_sampling_config_validates_and_round_trips():
    config = SamplingConfig(schedule="linear", sampler="euler", steps=8, eta=0.0, latent_scale=2.5)
    assert SamplingConfig.from_dict(config.to_dict()) == config
    for bad, match in (({"schedule": "sqrt"}, "schedule"), ({"sampler": "heun"}, "sampler"),
                       ({"steps": 0}, "steps"), ({"eta": 2.0}, "eta"), ({"latent_scale": 0.0}, "latent_scale")):
        with pytest.raises(ValueError, match=match):
            SamplingConfig(**bad)
