"""Reference 2D inpaintings and their score, to put a diffusion model's inpainting in context.

- :func:`flat_fill`: every masked pixel set to the mean colour of the pixels outside the mask;
- :func:`telea`: OpenCV's fast-marching inpainting (Telea 2004, radius 5 px);
- :func:`masked_psnr`: PSNR in dB over the masked pixels only.

Images are float32 ``(H, W, 3)`` in [0, 1], masks bool ``(H, W)`` (True: fill).
"""

from __future__ import annotations

import numpy as np


def flat_fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with the masked pixels set to the mean colour of the others."""
    out = image.copy()
    out[mask] = image[~mask].mean(axis=0)
    return out


def telea(image: np.ndarray, mask: np.ndarray, radius: int = 5) -> np.ndarray:
    """OpenCV's Telea inpainting of ``image`` inside ``mask`` (8-bit internally)."""
    import cv2

    from ..images import to_uint8

    filled = cv2.inpaint(to_uint8(image), mask.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    return filled.astype(np.float32) / 255.0


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB of ``a`` against ``b`` over the pixels where ``mask`` is true."""
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return float(10.0 * np.log10(1.0 / max(mse, 1e-12)))
