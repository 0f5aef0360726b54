"""Known values of PSNR, SSIM, FID and KID."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maldnerf.evaluate import measures


def _image(seed: int = 0, shape=(40, 50, 3), low=0.2, high=0.8) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def test_psnr_of_a_constant_offset_is_20_db():
    truth = _image()
    assert measures.psnr(truth + 0.1, truth) == pytest.approx(20.0, abs=1e-4)
    assert measures.psnr(truth + 0.01, truth) == pytest.approx(40.0, abs=1e-3)


def test_psnr_inside_and_outside_a_mask():
    truth = _image()
    mask = np.zeros(truth.shape[:2], bool)
    mask[10:20, 5:30] = True
    render = truth.copy()
    render[mask] += 0.1
    assert measures.psnr(render, truth, mask) == pytest.approx(20.0, abs=1e-4)
    assert measures.psnr(render, truth, ~mask) == pytest.approx(100.0)  # identical: MSE floor
    # Full image: MSE = 0.01 * coverage.
    coverage = mask.mean()
    assert measures.psnr(render, truth) == pytest.approx(
        -10 * math.log10(0.01 * coverage), abs=1e-3
    )
    assert measures.psnr(render, truth, np.zeros_like(mask)) is None


def test_ssim_of_identical_images_is_one_everywhere():
    image = _image()
    assert measures.ssim(image, image) == pytest.approx(1.0)
    assert np.allclose(measures.ssim_map(image, image), 1.0)


def test_ssim_of_constant_images_has_the_closed_form():
    a, b = 0.3, 0.6
    x = np.full((30, 30, 3), a, np.float32)
    y = np.full((30, 30, 3), b, np.float32)
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # no variance: contrast term is 1
    assert measures.ssim(x, y) == pytest.approx(expected, rel=1e-6)
    assert np.allclose(measures.ssim_map(x, y), expected, rtol=1e-6)


def _ssim_by_definition(x: np.ndarray, y: np.ndarray, r: int, c: int) -> float:
    """SSIM at pixel (r, c) straight from Wang et al.: Gaussian-weighted local statistics."""
    offsets = np.arange(-5, 6)
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    values = []
    for ch in range(3):
        px = x[r - 5 : r + 6, c - 5 : c + 6, ch].astype(np.float64)
        py = y[r - 5 : r + 6, c - 5 : c + 6, ch].astype(np.float64)
        mx, my = (w * px).sum(), (w * py).sum()
        vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
        cov = (w * (px - mx) * (py - my)).sum()
        c1, c2 = 0.01**2, 0.03**2
        values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_map_matches_the_definition_at_interior_pixels():
    x = _image(1)
    y = np.clip(x + np.random.default_rng(2).normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    values = measures.ssim_map(x, y)
    for r, c in [(5, 5), (20, 25), (34, 44), (12, 40)]:
        assert values[r, c] == pytest.approx(_ssim_by_definition(x, y, r, c), abs=1e-9)
    assert 0.0 < measures.ssim(x, y) < 0.95


def test_ssim_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    x = _image(3)
    y = np.clip(x + np.random.default_rng(4).normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    expected, full = metrics.structural_similarity(
        x,
        y,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=2,
        full=True,
    )
    assert measures.ssim(x, y) == pytest.approx(expected, abs=1e-6)
    assert np.allclose(measures.ssim_map(x, y), full.mean(axis=2), atol=1e-6)


def test_masked_ssim_is_the_mean_of_the_map_over_the_mask():
    x = _image(5)
    y = x.copy()
    mask = np.zeros(x.shape[:2], bool)
    mask[10:30, 10:30] = True
    y[mask] = 0.5
    values = measures.ssim_map(x, y)
    assert measures.masked_mean(values, mask) == pytest.approx(values[mask].mean())
    assert measures.masked_mean(values, mask) < 0.5
    far = np.zeros_like(mask)
    far[:, 40:] = True  # > window radius away from the change
    assert measures.masked_mean(values, far) == pytest.approx(1.0)
    assert measures.masked_mean(values, np.zeros_like(mask)) is None


def test_bounding_box_and_its_minimum_size():
    mask = np.zeros((100, 80), bool)
    mask[40:50, 30:35] = True
    assert measures.bounding_box(mask) == (40, 50, 30, 35)
    top, bottom, left, right = measures.bounding_box(mask, min_size=32)
    assert (bottom - top, right - left) == (32, 32)
    assert top <= 40 and bottom >= 50 and left <= 30 and right >= 35
    corner = np.zeros((100, 80), bool)
    corner[0:3, 78:80] = True
    assert measures.bounding_box(corner, min_size=32) == (0, 32, 48, 80)  # kept inside
    assert measures.bounding_box(np.zeros((20, 20), bool)) is None
    assert measures.bounding_box(np.ones((20, 10), bool), min_size=32) == (0, 20, 0, 10)


def test_fid_matches_the_sqrtm_formula_when_well_conditioned():
    from scipy import linalg

    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 12))
    b = rng.normal(0.5, 1.5, size=(250, 12)) @ rng.normal(size=(12, 12))
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * linalg.sqrtm(s_a @ s_b).real)
    assert measures.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_fid_with_few_samples_is_exact():
    # Fewer samples than dimensions (as 8 test views vs 2048 Inception features): a pure shift
    # of the same set has FID = |shift|^2 exactly, identical sets have 0.
    rng = np.random.default_rng(1)
    a = rng.normal(size=(8, 512))
    shift = rng.normal(size=512)
    assert measures.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert measures.frechet_distance(a, a + shift) == pytest.approx(shift @ shift, rel=1e-9)
    assert measures.frechet_distance(a, rng.normal(size=(8, 512))) > 100
    with pytest.raises(ValueError):
        measures.frechet_distance(a[:1], a)


def test_kid_matches_clean_fid_and_is_repeatable():
    from cleanfid.fid import kernel_distance

    rng = np.random.default_rng(2)
    a = rng.normal(size=(20, 16))
    b = rng.normal(0.3, 1.0, size=(20, 16))
    # Subsets as large as the sets: every subset is the whole set, so clean-fid is deterministic.
    assert measures.kernel_distance(a, b) == pytest.approx(kernel_distance(a, b), rel=1e-10)
    big = rng.normal(size=(60, 16))
    first = measures.kernel_distance(big, b, subsets=10, subset_size=10, seed=3)
    assert first == measures.kernel_distance(big, b, subsets=10, subset_size=10, seed=3)
    assert measures.kernel_distance(a, b) > measures.kernel_distance(a, a + 1e-9)
