"""HaarPSI, GMSD and MS-SSIM through our wrapper against formulas written here from the papers.

The library's own reference pair (TID2013's I01 and i01_01_5, with the authors' MATLAB HaarPSI)
cannot ship with this project, so the known pair is a deterministic synthetic one and the
expected values come from independent NumPy implementations of the published definitions
(float64), with the alignment conventions the library documents (zero padding as MATLAB's
``conv2(..., 'same')`` for HaarPSI, ``valid`` Gaussian windows for MS-SSIM). Sizes are even at
every scale, so no odd-size padding is involved.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import correlate
from scipy.signal import correlate2d

from maldnerf.evaluate import perceptual
from maldnerf.evaluate.stage import EvaluateSettings, _perceptual_metrics, _View

YIQ = np.array([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]])


def _pair(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A structured image (stripes, a ramp, a disc) and a blurred, noisy, shifted copy."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    base = 0.5 + 0.2 * np.sin(cols / 3.0) * np.cos(rows / 5.0) + 0.15 * (cols / width - 0.5)
    disc = (rows - height / 2) ** 2 + (cols - width / 3) ** 2 < (height / 4) ** 2
    base = base + 0.15 * disc
    truth = np.clip(np.stack([base, base**1.3, 1 - base], axis=2), 0, 1)
    rng = np.random.default_rng(7)
    blurred = (truth + np.roll(truth, 1, axis=1) + np.roll(truth, 1, axis=0)) / 3
    render = np.clip(blurred + rng.normal(0, 0.03, truth.shape) + 0.02, 0, 1)
    return render, truth


def _half(a: np.ndarray) -> np.ndarray:
    """2x2 block means (even sizes)."""
    h, w = a.shape[:2]
    return a.reshape(h // 2, 2, w // 2, 2, *a.shape[2:]).mean(axis=(1, 3))


def _similarity(a: np.ndarray, b: np.ndarray, c: float) -> np.ndarray:
    return (2 * a * b + c) / (a * a + b * b + c)


def _gmsd_reference(x: np.ndarray, y: np.ndarray, t: float = 170 / 255**2) -> float:
    """Xue et al.: luma, 2x2 mean downsampling, Prewitt magnitude, std of the GMS map."""
    prewitt = np.array([[1.0, 0.0, -1.0]] * 3) / 3

    def magnitude(image: np.ndarray) -> np.ndarray:
        luma = _half(image @ YIQ[0])
        gx = correlate(luma, prewitt, mode="constant")
        gy = correlate(luma, prewitt.T, mode="constant")
        return np.sqrt(gx * gx + gy * gy)

    return float(_similarity(magnitude(x), magnitude(y), t).std())


def _ms_ssim_reference(x: np.ndarray, y: np.ndarray, weights: tuple[float, ...]) -> float:
    """Wang et al. 2003, per channel then averaged: contrast-structure at the finer scales,
    full SSIM at the coarsest, 11-px Gaussian (σ 1.5) over valid windows, 2x2 mean pyramid."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    scores = []
    for channel in range(3):
        a, b = x[..., channel], y[..., channel]
        factors = []
        for level in range(len(weights)):
            if level:
                a, b = _half(a), _half(b)

            def blur(v: np.ndarray) -> np.ndarray:
                return correlate2d(v, window, mode="valid")

            ma, mb = blur(a), blur(b)
            va, vb, cov = blur(a * a) - ma**2, blur(b * b) - mb**2, blur(a * b) - ma * mb
            cs = (2 * cov + c2) / (va + vb + c2)
            luminance = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
            last = level == len(weights) - 1
            factors.append(max(float((luminance * cs if last else cs).mean()), 0.0))
        scores.append(np.prod(np.power(factors, weights)))
    return float(np.mean(scores))


def _haarpsi_reference(x: np.ndarray, y: np.ndarray, c: float = 30.0, alpha: float = 4.2) -> float:
    """Reisenhofer et al. 2018: YIQ in [0, 255], 2x2 mean downsampling, Haar filters of 2, 4, 8
    px on the luma (aligned as MATLAB's conv2 'same'), chroma by a 2x2 mean, logistic pooling
    weighted by the coarsest scale."""

    def haar(luma: np.ndarray, size: int) -> list[np.ndarray]:
        kernel = np.ones((size, size)) / size
        kernel[size // 2 :] *= -1
        pad = (size // 2 - 1, size // 2)
        padded = np.pad(luma, (pad, pad))
        return [np.abs(correlate2d(padded, k, mode="valid")) for k in (kernel, kernel.T)]

    def chroma(plane: np.ndarray) -> np.ndarray:
        p = np.pad(plane, ((0, 1), (0, 1)))
        return np.abs((p[:-1, :-1] + p[1:, :-1] + p[:-1, 1:] + p[1:, 1:]) / 4)

    ix, iy = _half(255 * x @ YIQ.T), _half(255 * y @ YIQ.T)
    hx = [haar(ix[..., 0], 2**j) for j in (1, 2, 3)]
    hy = [haar(iy[..., 0], 2**j) for j in (1, 2, 3)]
    sims, weights = [], []
    for o in (0, 1):
        sims.append((_similarity(hx[0][o], hy[0][o], c) + _similarity(hx[1][o], hy[1][o], c)) / 2)
        weights.append(np.maximum(hx[2][o], hy[2][o]))
    sims.append(sum(_similarity(chroma(ix[..., k]), chroma(iy[..., k]), c) for k in (1, 2)) / 2)
    weights.append((weights[0] + weights[1]) / 2)
    logistic = [1 / (1 + np.exp(-alpha * s)) for s in sims]
    pooled = sum((lg * w).sum() for lg, w in zip(logistic, weights)) / sum(w.sum() for w in weights)
    return float((np.log(pooled / (1 - pooled)) / alpha) ** 2)


@pytest.mark.parametrize("size", [(64, 96), (48, 64)])
def test_haarpsi_and_gmsd_match_the_published_formulas(size):
    render, truth = _pair(*size)
    haarpsi, _ = perceptual.score("haarpsi", render, truth)
    gmsd, _ = perceptual.score("gmsd", render, truth)
    assert haarpsi == pytest.approx(_haarpsi_reference(render, truth), rel=1e-4)
    assert gmsd == pytest.approx(_gmsd_reference(render, truth), rel=1e-4)
    assert 0.3 < haarpsi < 0.99 and 0.01 < gmsd < 0.3  # a real, non-trivial distortion


@pytest.mark.parametrize(
    ("size", "scales"), [((64, 96), 3), ((48, 64), 3), ((32, 40), 2), ((192, 192), 5)]
)
def test_ms_ssim_matches_the_published_formula_with_the_scales_that_fit(size, scales):
    render, truth = _pair(*size)
    value, details = perceptual.score("ms_ssim", render, truth)
    assert details == {"scales": scales} and perceptual.ms_ssim_scales(*size) == scales
    weights = perceptual.MS_SSIM_WEIGHTS[:scales]
    if scales < 5:  # truncated: renormalised to sum to 1
        weights = tuple(w / sum(weights) for w in weights)
    assert value == pytest.approx(_ms_ssim_reference(render, truth, weights), rel=1e-4)
    assert 0.3 < value < 0.999


def test_ms_ssim_of_flat_images_is_the_luminance_term_to_the_coarsest_weight():
    """No variance: every contrast-structure factor is 1, so MS-SSIM = l ** (w_L / Σ w)."""
    a, b = 0.3, 0.6
    luminance = (2 * a * b + 0.01**2) / (a * a + b * b + 0.01**2)
    for (height, width), scales in (((120, 160), 4), ((30, 30), 2), ((170, 200), 5)):
        x = np.full((height, width, 3), a)
        y = np.full((height, width, 3), b)
        value, details = perceptual.score("ms_ssim", x, y)
        weights = perceptual.MS_SSIM_WEIGHTS[:scales]
        exponent = weights[-1] if scales == 5 else weights[-1] / sum(weights)
        assert details["scales"] == scales
        # float32 (the wrapper's precision): E[x²] - μ² leaves ~1e-7 next to C2 = 9e-4.
        assert value == pytest.approx(luminance**exponent, rel=2e-4)


def test_identical_images_score_perfectly_and_metrics_are_symmetric():
    render, truth = _pair(48, 64)
    assert perceptual.score("haarpsi", truth, truth)[0] == pytest.approx(1.0, abs=1e-5)
    assert perceptual.score("gmsd", truth, truth)[0] == pytest.approx(0.0, abs=1e-6)
    assert perceptual.score("ms_ssim", truth, truth)[0] == pytest.approx(1.0, abs=1e-5)
    for metric in perceptual.PERCEPTUAL:
        forward = perceptual.score(metric, render, truth)[0]
        assert forward == pytest.approx(perceptual.score(metric, truth, render)[0], rel=1e-5)


def test_images_too_small_are_refused_not_scored():
    render, truth = _pair(48, 64)
    with pytest.raises(perceptual.TooSmall, match="16 px"):
        perceptual.score("haarpsi", render[:15], truth[:15])
    with pytest.raises(perceptual.TooSmall, match="21 px"):  # fewer than 2 MS-SSIM scales
        perceptual.score("ms_ssim", render[:20], truth[:20])
    assert perceptual.score("ms_ssim", render[:21], truth[:21])[1] == {"scales": 2}
    assert perceptual.ms_ssim_scales(160, 161) == 4 and perceptual.ms_ssim_scales(161, 161) == 5
    assert perceptual.ms_ssim_scales(10, 10) == 0


def _masked_view(render: np.ndarray, truth: np.ndarray) -> tuple[_View, np.ndarray]:
    mask = np.zeros(truth.shape[:2], bool)
    mask[20:40, 30:50] = True  # a 20x20 object in a 64x96 view; crop grown to 32x32
    return _View("v", truth, render, mask), mask


def _scores(view: _View, **settings) -> tuple[dict, dict]:
    row: dict = {}
    too_small: dict = {}
    _perceptual_metrics(EvaluateSettings(**settings), view, row, too_small)
    return row, too_small


def test_masked_forms_see_only_the_pixels_inside_the_mask():
    render, truth = _pair(64, 96)
    # Wrong only outside the mask (inside the crop too): masked form perfect, the others not.
    outside = render.copy()
    view, mask = _masked_view(outside, truth)
    outside[mask] = truth[mask]
    row, too_small = _scores(view)
    assert not too_small
    assert row["haarpsi_masked"] == pytest.approx(1.0, abs=1e-5)
    assert row["gmsd_masked"] == pytest.approx(0.0, abs=1e-6)
    assert row["ms_ssim_masked"] == pytest.approx(1.0, abs=1e-5)
    assert row["m_haarpsi"] < 0.99 and row["m_gmsd"] > 0.01 and row["m_ms_ssim"] < 0.999
    assert row["haarpsi"] < 0.99 and row["gmsd"] > 0.01 and row["ms_ssim"] < 0.99
    assert row["ms_ssim_scales"] == {"ms_ssim": 3, "ms_ssim_masked": 2, "m_ms_ssim": 2}

    # Wrong only inside the mask: the masked form equals the crop form and is no longer perfect;
    # changing the pixels outside the mask leaves the masked form exactly as it was.
    inside = truth.copy()
    inside[mask] = render[mask]
    row_in, _ = _scores(_masked_view(inside, truth)[0])
    for metric in perceptual.PERCEPTUAL:
        assert row_in[f"{metric}_masked"] == pytest.approx(row_in[f"m_{metric}"], rel=1e-6)
    assert row_in["haarpsi_masked"] < 0.99 and row_in["gmsd_masked"] > 0.01
    both = render.copy()
    row_both, _ = _scores(_masked_view(both, truth)[0])
    for metric in perceptual.PERCEPTUAL:
        assert row_both[f"{metric}_masked"] == row_in[f"{metric}_masked"]
        assert row_both[f"m_{metric}"] != pytest.approx(row_in[f"m_{metric}"], rel=1e-6)


def test_crops_too_small_are_reported_per_view_and_disabled_metrics_skipped():
    render, truth = _pair(64, 96)
    view, _ = _masked_view(render, truth)
    row, too_small = _scores(view, m_lpips_min_size=0)  # the 20x20 crop as it is
    assert "m_ms_ssim" not in row and "ms_ssim_masked" not in row  # 20 px: < 2 scales
    assert too_small["m_ms_ssim"] == [
        ("v", "the mask's crop needs at least 21 px a side, the image is 20x20")
    ]
    assert row["m_haarpsi"] is not None and row["ms_ssim"] is not None
    row, too_small = _scores(view, metrics=["psnr", "gmsd"])
    assert set(row) == {"gmsd", "gmsd_masked", "m_gmsd"} and not too_small
