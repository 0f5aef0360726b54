"""Image-quality measures that need no learned weights: PSNR, SSIM, FID and KID from features.

Definitions (images float ``(H, W, 3)`` in [0, 1], masks bool ``(H, W)``, ``True`` on the object):

- **PSNR** ``10·log10(1 / MSE)`` with the MSE over the selected pixels and all three channels;
  the MSE is floored at ``1e-10`` so identical images give 100 dB, not infinity.
- **SSIM map** (Wang et al. 2004): local statistics under a Gaussian window (σ = ``sigma``,
  ``window`` pixels wide), population (not sample) variances, ``K1 = 0.01``, ``K2 = 0.03``,
  data range 1, borders by reflection; computed per channel and averaged over the channels.
- **SSIM** (full image): the mean of the map with a border of ``window // 2`` pixels cropped —
  the same number as ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=2)``.
- **Masked / outside SSIM**: the mean of the same (uncropped) map over the mask's pixels / over
  the other pixels.
- **FID**: Fréchet distance between Gaussians fitted to two feature sets (sample covariance, as
  clean-fid). ``Tr sqrt(Σ1 Σ2)`` is computed exactly as the nuclear norm of ``A1 A2ᵀ`` (``A`` the
  centred features over ``sqrt(n - 1)``), which equals clean-fid's ``scipy.linalg.sqrtm`` result
  when that is well defined and stays exact when there are fewer images than feature dimensions
  (a few test views against 2048 Inception features), where ``sqrtm`` is ill-conditioned.
- **KID**: clean-fid's ``kernel_distance`` (cubic polynomial kernel, unbiased MMD², averaged
  over random subsets), with a seeded generator so a run is repeatable.
"""

from __future__ import annotations

import numpy as np

MSE_FLOOR = 1e-10


def psnr(
    image: np.ndarray, reference: np.ndarray, select: np.ndarray | None = None
) -> float | None:
    """PSNR in dB of ``image`` against ``reference`` over the pixels where ``select`` is true.

    Returns ``None`` when ``select`` selects no pixel.
    """
    diff = np.asarray(image, np.float64) - np.asarray(reference, np.float64)
    if select is not None:
        if not select.any():
            return None
        diff = diff[select]
    mse = max(float(np.mean(diff * diff)), MSE_FLOOR)
    return float(10.0 * np.log10(1.0 / mse))


def ssim_map(
    image: np.ndarray,
    reference: np.ndarray,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> np.ndarray:
    """Per-pixel SSIM ``(H, W)`` of two images in [0, 1], averaged over channels."""
    from scipy.ndimage import gaussian_filter

    x = np.asarray(image, np.float64)
    y = np.asarray(reference, np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    radius = window // 2
    c1, c2 = k1**2, k2**2

    def blur(a: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                gaussian_filter(a[..., c], sigma, mode="reflect", radius=radius)
                for c in range(a.shape[2])
            ],
            axis=2,
        )

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    numerator = (2 * mx * my + c1) * (2 * cxy + c2)
    denominator = (mx * mx + my * my + c1) * (vx + vy + c2)
    return (numerator / denominator).mean(axis=2)


def ssim(image: np.ndarray, reference: np.ndarray, window: int = 11, sigma: float = 1.5) -> float:
    """Full-image SSIM: the mean of :func:`ssim_map` without a ``window // 2`` pixel border."""
    return cropped_mean(ssim_map(image, reference, window, sigma), window // 2)


def cropped_mean(values: np.ndarray, pad: int) -> float:
    """Mean of ``values`` without a border of ``pad`` pixels (all of it if too small to crop)."""
    if pad > 0 and values.shape[0] > 2 * pad and values.shape[1] > 2 * pad:
        values = values[pad:-pad, pad:-pad]
    return float(values.mean())


def masked_mean(values: np.ndarray, select: np.ndarray) -> float | None:
    """Mean of ``values`` over the pixels where ``select`` is true (``None`` if there are none)."""
    return float(values[select].mean()) if select.any() else None


def bounding_box(mask: np.ndarray, min_size: int = 0) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` (exclusive ends) of the mask's bounding box.

    A side shorter than ``min_size`` is grown about its centre (kept inside the image; the whole
    side when the image is smaller). ``None`` for an empty mask.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None

    def grow(lo: int, hi: int, limit: int) -> tuple[int, int]:
        size = min(max(hi - lo, min_size), limit)
        start = min(max((lo + hi - size) // 2, 0), limit - size)
        return start, start + size

    top, bottom = grow(int(rows[0]), int(rows[-1]) + 1, mask.shape[0])
    left, right = grow(int(cols[0]), int(cols[-1]) + 1, mask.shape[1])
    return top, bottom, left, right


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets ``(n, d)`` and ``(m, d)``; both need at least 2 rows."""
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("FID needs at least two feature vectors on each side")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    centred_a = (a - mean_a) / np.sqrt(a.shape[0] - 1)
    centred_b = (b - mean_b) / np.sqrt(b.shape[0] - 1)
    trace_a = float(np.sum(centred_a * centred_a))
    trace_b = float(np.sum(centred_b * centred_b))
    # Σa Σb = Aᵀ A Bᵀ B has the same nonzero eigenvalues as (A Bᵀ)(A Bᵀ)ᵀ, so
    # Tr sqrt(Σa Σb) is the sum of the singular values of A Bᵀ.
    trace_sqrt = float(np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum())
    diff = mean_a - mean_b
    return float(diff @ diff + trace_a + trace_b - 2.0 * trace_sqrt)


def kernel_distance(
    features_a: np.ndarray,
    features_b: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """KID (clean-fid's ``kernel_distance``) with a seeded random generator."""
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    dim = a.shape[1]
    m = min(a.shape[0], b.shape[0], subset_size)
    if m < 2:
        raise ValueError("KID needs at least two feature vectors on each side")
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = b[rng.choice(b.shape[0], m, replace=False)]
        y = a[rng.choice(a.shape[0], m, replace=False)]
        k = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
        cross = (x @ y.T / dim + 1) ** 3
        total += (k.sum() - np.diag(k).sum()) / (m - 1) - cross.sum() * 2 / m
    return float(total / subsets / m)
