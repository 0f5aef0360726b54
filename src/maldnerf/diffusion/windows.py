"""Model-sized windows around a mask, and compositing the inpainted window back.

Views of any size and aspect ratio are inpainted through a square window: the mask's bounding
box grown by ``margin`` (a fraction of its longer side) on every side, at least the model
resolution and at most the longer image side, centred on the box and shifted to lie inside the
image. The window is resized to the model resolution (area averaging; a model pixel is masked
if any of its source pixels is), inpainted, resized back (bicubic) and pasted **inside the mask
only**: every pixel outside the mask keeps its input value exactly.

**Overhanging windows.** When the window is larger than the image along one axis (a mask
spanning most of the height of a wide view) the model sees only real image content: the part of
the window outside the image is a **border** of mid grey (:data:`GREY`, 0 in the model's
[-1, 1] range) that :func:`mask_to_model` marks as masked, so the model inpaints it like the
hole and :func:`paste` discards it. A model pixel whose footprint touches the border is masked
too, so every unmasked model pixel is an area average of real pixels only; the conditioning
image (the masked pixels greyed) therefore holds real content or grey, and a re-inpainting
(IDU) starts from the render inside the mask and the original outside it, with the border grey
and masked as in the initial inpainting. The window stays square rather than being clipped to
the image: Stable Diffusion inpainting models are trained on square crops, and one size keeps
views batchable (one noise shape, one cache of conditioning latents). The earlier mirror
padding fed reflected copies of the view to the model as context. Training crops, which need a
real target everywhere, use :func:`fit_inside` instead: the window shrunk to the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GREY = 0.5
"""Value of the border of an overhanging window in a model input image (in [0, 1])."""


@dataclass(frozen=True)
class Window:
    """A square window ``[x0, x0 + size) × [y0, y0 + size)`` in image pixels; it may overhang
    the image (the overhang is a masked grey border, see the module docstring)."""

    x0: int
    y0: int
    size: int

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.size]


def mask_window(mask: np.ndarray, resolution: int, margin: float) -> Window:
    """The window used to inpaint ``mask`` (bool ``(H, W)``, must have object pixels)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("mask has no object pixels")
    height, width = mask.shape
    top, bottom = int(ys.min()), int(ys.max()) + 1
    left, right = int(xs.min()), int(xs.max()) + 1
    extent = max(bottom - top, right - left)
    size = max(math.ceil(extent * (1.0 + 2.0 * margin)), resolution)
    size = max(min(size, max(height, width)), extent)

    def start(low: int, high: int, length: int) -> int:
        if size >= length:
            return (length - size) // 2
        centre = (low + high) / 2.0
        return int(min(max(round(centre - size / 2.0), 0), length - size))

    return Window(start(left, right, width), start(top, bottom, height), size)


def fit_inside(window: Window, height: int, width: int) -> Window:
    """``window`` shrunk to at most the shorter image side, around the same centre, and shifted
    into the ``height × width`` image: a window of real pixels only (for training crops)."""
    size = min(window.size, height, width)
    shift = (window.size - size) / 2.0
    x0 = int(min(max(round(window.x0 + shift), 0), width - size))
    y0 = int(min(max(round(window.y0 + shift), 0), height - size))
    return Window(x0, y0, size)


def cut(array: np.ndarray, window: Window, fill: float = 0.0) -> np.ndarray:
    """The window's pixels of ``array`` (``(H, W)`` or ``(H, W, C)``); where the window overhangs
    the image they are ``fill`` (never copies of image pixels)."""
    height, width = array.shape[:2]
    pad_top, pad_left = max(0, -window.y0), max(0, -window.x0)
    pad_bottom = max(0, window.y0 + window.size - height)
    pad_right = max(0, window.x0 + window.size - width)
    y0, x0 = max(window.y0, 0), max(window.x0, 0)
    inside = array[y0 : window.y0 + window.size, x0 : window.x0 + window.size]
    if pad_top or pad_bottom or pad_left or pad_right:
        pads = [(pad_top, pad_bottom), (pad_left, pad_right)] + [(0, 0)] * (array.ndim - 2)
        inside = np.pad(inside, pads, mode="constant", constant_values=fill)
    return np.ascontiguousarray(inside)


def image_to_model(image: np.ndarray, window: Window, resolution: int) -> np.ndarray:
    """The window of a float image resized to ``resolution × resolution`` (area averaging); an
    overhang is :data:`GREY` (and masked by :func:`mask_to_model`)."""
    import cv2

    crop = cut(image, window, GREY)
    if window.size == resolution:
        return crop.astype(np.float32)
    return cv2.resize(crop, (resolution, resolution), interpolation=cv2.INTER_AREA).astype(
        np.float32
    )


def mask_to_model(mask: np.ndarray, window: Window, resolution: int) -> np.ndarray:
    """The window of a bool mask at model resolution; a pixel is masked if any source pixel is
    masked or outside the image (the border of an overhanging window is inpainted, then
    discarded)."""
    import cv2

    crop = cut(mask.astype(np.float32), window, 1.0)
    if window.size == resolution:
        return crop > 0.5
    area = cv2.resize(crop, (resolution, resolution), interpolation=cv2.INTER_AREA)
    return area > 1e-6


def paste(image: np.ndarray, mask: np.ndarray, window: Window, patch: np.ndarray) -> np.ndarray:
    """``image`` with the pixels inside ``mask`` replaced by the window ``patch`` resized back.

    Pixels outside ``mask`` are copied from ``image`` unchanged (bit for bit); the part of the
    patch outside the image (an overhang's border) is discarded.
    """
    import cv2

    if patch.shape[0] != window.size:
        patch = cv2.resize(patch, (window.size, window.size), interpolation=cv2.INTER_CUBIC)
    patch = np.clip(patch, 0.0, 1.0).astype(image.dtype)
    out = image.copy()
    height, width = mask.shape
    y0, x0 = max(window.y0, 0), max(window.x0, 0)
    y1, x1 = min(window.y0 + window.size, height), min(window.x0 + window.size, width)
    region = mask[y0:y1, x0:x1]
    source = patch[y0 - window.y0 : y1 - window.y0, x0 - window.x0 : x1 - window.x0]
    out[y0:y1, x0:x1][region] = source[region]
    return out
