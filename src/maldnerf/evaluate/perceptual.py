"""Weight-free perceptual full-reference metrics, computed with ``piq``: HaarPSI, GMSD, MS-SSIM.

Why ``piq``: it implements all three with no learned weights, as small pure-PyTorch functions
(so they run on any machine, on the CPU, without downloading anything), it is maintained,
and its own tests check HaarPSI against the authors' MATLAB code and MS-SSIM against
TensorFlow's. ``pyiqa`` wraps the same metrics behind a model registry that also fetches weight
files; ``torchmetrics`` has MS-SSIM but neither HaarPSI nor GMSD.

Images are float ``(H, W, 3)`` in [0, 1] (as :mod:`.measures`); each metric gets them as one
float32 ``(1, 3, H, W)`` batch on the CPU with ``data_range=1`` and the library's default
constants (float32: float64 makes MS-SSIM ~25x slower on the CPU; float32 values agree with float64 to
about 1e-4 relative, the worst case being flat regions, where MS-SSIM's variances cancel):

- **HaarPSI** (Reisenhofer et al. 2018): ``piq.haarpsi`` (YIQ colour, 2x downsampling, three
  Haar scales, C = 30, α = 4.2). Higher is better, 1 for identical images. The library refuses
  images below 16 px a side.
- **GMSD** (Xue et al. 2014): ``piq.gmsd`` (luma, 2x downsampling, Prewitt gradients,
  T = 170/255²). Lower is better, 0 for identical images. Needs 2 px a side here (one pixel
  after the downsampling).
- **MS-SSIM** (Wang et al. 2003): ``piq.multi_scale_ssim`` (11-px Gaussian window, σ = 1.5,
  K1 = 0.01, K2 = 0.03, per colour channel, then averaged). Higher is better, 1 for identical
  images. Its 5 standard scales (weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333) need at least
  ``10·2⁴ + 1 = 161`` px a side, which the default 160x120 renders and the mask crops do not
  have; such images use the first (finest) ``L`` scales that fit — the largest ``L`` with
  ``10·2^(L−1) + 1 ≤`` the shorter side — with their weights renormalised to sum to 1 (as the
  library does for any weight vector), and the number of scales is recorded next to the value.
  Images too small for 2 scales (below 21 px a side) get no MS-SSIM. Images are never
  upsampled: that would score interpolated pixels.

An image too small for a metric raises :class:`TooSmall` (the caller reports the metric as
missing with that message); the library's own checks stay on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PERCEPTUAL = ("haarpsi", "gmsd", "ms_ssim")
"""The metrics of this module (setting names in ``evaluate.metrics``)."""
HIGHER_IS_BETTER = {"haarpsi": True, "gmsd": False, "ms_ssim": True}
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""MS-SSIM's standard scale weights (Wang et al. 2003), finest scale first."""
MS_SSIM_WINDOW = 11
MS_SSIM_MIN_SCALES = 2
HAARPSI_MIN_SIZE = 16  # piq: 2 ** (scales + 1) with its 3 Haar scales
GMSD_MIN_SIZE = 2


class TooSmall(ValueError):
    """An image is smaller than a metric needs."""


def ms_ssim_scales(height: int, width: int) -> int:
    """The number of MS-SSIM scales (at most 5) an image of this size admits; 0 if none."""
    side = min(height, width)
    return max(
        (
            n
            for n in range(1, len(MS_SSIM_WEIGHTS) + 1)
            if (MS_SSIM_WINDOW - 1) * 2 ** (n - 1) < side
        ),
        default=0,
    )


def min_size(metric: str) -> int:
    """The shortest side in pixels that ``metric`` accepts."""
    return {
        "haarpsi": HAARPSI_MIN_SIZE,
        "gmsd": GMSD_MIN_SIZE,
        "ms_ssim": (MS_SSIM_WINDOW - 1) * 2 ** (MS_SSIM_MIN_SCALES - 1) + 1,
    }[metric]


def _batch(image: np.ndarray) -> Any:
    import torch

    array = np.asarray(image, np.float32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {array.shape}")
    return torch.from_numpy(array.transpose(2, 0, 1).copy())[None]


def score(metric: str, image: np.ndarray, reference: np.ndarray) -> tuple[float, dict[str, Any]]:
    """``metric`` of ``image`` against ``reference`` and its details (``{"scales": L}`` for MS-SSIM).

    Raises :class:`TooSmall` when the images are smaller than the metric needs.
    """
    import piq
    import torch

    if np.shape(image) != np.shape(reference):
        raise ValueError(f"image {np.shape(image)} and reference {np.shape(reference)} differ")
    height, width = np.shape(image)[:2]
    need = min_size(metric)
    if min(height, width) < need:
        raise TooSmall(f"needs at least {need} px a side, the image is {width}x{height}")
    x, y = _batch(image), _batch(reference)
    details: dict[str, Any] = {}
    with torch.no_grad():
        if metric == "haarpsi":
            value = piq.haarpsi(x, y, data_range=1.0, reduction="none")
        elif metric == "gmsd":
            value = piq.gmsd(x, y, data_range=1.0, reduction="none")
        elif metric == "ms_ssim":
            scales = ms_ssim_scales(height, width)
            # All five scales: the library's own default weights (it would renormalise ours).
            weights = (
                None if scales == len(MS_SSIM_WEIGHTS) else torch.tensor(MS_SSIM_WEIGHTS[:scales])
            )
            value = piq.multi_scale_ssim(
                x,
                y,
                kernel_size=MS_SSIM_WINDOW,
                kernel_sigma=1.5,
                data_range=1.0,
                reduction="none",
                scale_weights=weights,
            )
            details["scales"] = scales
        else:
            raise ValueError(f"unknown perceptual metric {metric!r}")
    return float(value.reshape(-1)[0]), details


def composite(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` inside ``mask`` and ``reference`` elsewhere (for the masked metrics)."""
    return np.where(np.asarray(mask, bool)[..., None], image, reference)


def library_version() -> str:
    """The installed ``piq`` version."""
    from importlib.metadata import version

    return version("piq")
