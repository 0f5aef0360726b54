import math

import pytest

from maldnerf.diffusion.schedule import ddim_timesteps, idu_strength, num_ddim_steps


def test_idu_strength_endpoints_and_square_root_shape():
    assert idu_strength(0, 100, 0.9, 0.1) == pytest.approx(0.9)
    assert idu_strength(100, 100, 0.9, 0.1) == pytest.approx(0.1)
    assert idu_strength(25, 100, 0.9, 0.1) == pytest.approx(0.9 - 0.8 * 0.5)
    assert idu_strength(64, 100, 1.0, 0.2) == pytest.approx(1.0 - 0.8 * 0.8)


def test_idu_strength_decreases_and_clamps():
    values = [idu_strength(k, 50, 0.98, 0.02) for k in range(0, 51)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert idu_strength(80, 50, 0.98, 0.02) == pytest.approx(0.02)
    assert idu_strength(-3, 50, 0.98, 0.02) == pytest.approx(0.98)


@pytest.mark.parametrize(
    "t_max,t_min,K", [(0.5, 0.6, 10), (1.2, 0.1, 10), (0.5, 0.0, 10), (0.9, 0.1, 0)]
)
def test_idu_strength_rejects_bad_ranges(t_max, t_min, K):
    with pytest.raises(ValueError):
        idu_strength(1, K, t_max, t_min)


def test_full_strength_timesteps_cover_the_whole_schedule():
    steps = ddim_timesteps(1.0, 20)
    assert len(steps) == 20
    assert steps[0] == 999 and steps[-1] == 49
    assert all(a - b == 50 for a, b in zip(steps, steps[1:]))


def test_partial_strength_starts_lower_with_fewer_steps():
    steps = ddim_timesteps(0.5, 20)
    assert steps == list(range(499, 0, -50))
    assert ddim_timesteps(0.02, 20) == [19]
    counts = [num_ddim_steps(t / 10, 20) for t in range(1, 11)]
    assert counts == [math.ceil(2 * t) for t in range(1, 11)]


@pytest.mark.parametrize("strength", [0.0, -0.1, 1.01, float("nan")])
def test_strength_outside_unit_interval_is_rejected(strength):
    with pytest.raises(ValueError):
        ddim_timesteps(strength, 20)
