"""Reading and writing images and masks.

On disk: images are 8-bit RGB PNGs; masks are 8-bit single-channel PNGs with 0 = keep and
255 = object. In memory: images are ``float32`` arrays of shape ``(H, W, 3)`` with values in
[0, 1]; masks are ``bool`` arrays of shape ``(H, W)``, ``True`` on the object.

Readers accept what cameras and annotation tools produce (EXIF-rotated JPEGs, grayscale, RGBA,
16-bit PNGs, label images, noisy JPEG masks), convert where that is safe and log a warning, and
raise :class:`~maldnerf.errors.UserError` naming the file otherwise.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import atomic
from .errors import UserError

log = logging.getLogger(__name__)

EXIF_ORIENTATION = 0x0112

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
PNG_COMPRESS_LEVEL = 1
"""zlib level of the PNGs the pipeline writes: about 4x faster than Pillow's default 6 for
files about a fifth larger (``benchmarks/speedups.py``)."""


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: cannot read image ({exc}); replace or remove the file") from None
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    if orientation in range(2, 9):
        image = ImageOps.exif_transpose(image)
        log.warning(
            "%s: EXIF orientation %d applied (%dx%d as displayed); its mask must be drawn on "
            "the image as displayed",
            path,
            orientation,
            image.width,
            image.height,
        )
    return image


def _to_float(image: Image.Image, path: Path) -> np.ndarray:
    """Pixel values of ``image`` as float32 in [0, 1], keeping every channel."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype in (np.uint16, np.int32) or image.mode.startswith("I"):
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        log.warning("%s: %s image converted to 8 bits per channel", path, image.mode)
        return np.clip(array.astype(np.float32) / peak, 0.0, 1.0)
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    raise UserError(f"{path}: unsupported pixel format {image.mode}; save it as an 8-bit RGB PNG")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as float32 RGB ``(H, W, 3)`` in [0, 1].

    EXIF orientation is applied. Grayscale is replicated to three channels and RGBA loses its
    alpha channel (composited on black), each with a warning; 16-bit images are scaled.
    """
    path = Path(path)
    image = _open(path)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        log.warning("%s: alpha channel dropped (composited on black)", path)
        image = image.convert("RGBA")
        rgba = np.asarray(image).astype(np.float32) / 255.0
        return np.ascontiguousarray(rgba[..., :3] * rgba[..., 3:4])
    if image.mode == "P":
        image = image.convert("RGB")
    array = _to_float(image, path)
    if array.ndim == 2:
        log.warning("%s: grayscale image converted to RGB", path)
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise UserError(f"{path}: expected an RGB image, found mode {image.mode}; save it as RGB")
    return np.ascontiguousarray(array)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read an object mask as a bool array ``(H, W)``, ``True`` on the object.

    Accepted forms: 0/255 (or 0/1) single-channel PNGs, label images where any nonzero label is
    the object, RGB(A) masks (the alpha channel when it is not constant, otherwise the
    brightest channel), and JPEG masks with compression noise (thresholded at half range). A
    mask with many mid-grey pixels (a soft matte, a photo) is ambiguous and rejected.
    """
    path = Path(path)
    image = _open(path)
    if image.mode in ("RGBA", "LA"):
        alpha = np.asarray(image)[..., -1]
        if alpha.min() != alpha.max():
            return alpha >= 128
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    if image.mode == "P":
        return np.asarray(image) != 0
    array = np.asarray(image)
    if array.ndim == 3:
        array = array.max(axis=2)
    if array.dtype == bool:
        return array.copy()
    values = np.unique(array)
    if (
        values.size <= 16
        and values.min() >= 0
        and np.all(values == np.round(values))
        and values.max() < 128
    ):
        # A label image: small integer ids, nonzero marks the object.
        return array != 0
    peak = 65535.0 if array.dtype == np.uint16 and array.max() > 255 else 255.0
    values = array.astype(np.float32) / peak
    ambiguous = float(np.mean((values > 0.25) & (values < 0.75)))
    if ambiguous > 0.05:
        raise UserError(
            f"{path}: mask is not binary ({100 * ambiguous:.0f}% of pixels are mid-grey); "
            "save it with the object white (255) and the rest black (0)"
        )
    return values >= 0.5


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Atomically write a float ``(H, W, 3)`` image in [0, 1] (or uint8) as an RGB PNG."""
    pixels = to_uint8(image)
    return atomic.atomic_write(
        path, lambda tmp: Image.fromarray(pixels).save(tmp, compress_level=PNG_COMPRESS_LEVEL)
    )


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Atomically write a bool mask ``(H, W)`` as a 0/255 single-channel PNG."""
    array = np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8)
    return atomic.atomic_write(
        path, lambda tmp: Image.fromarray(array).save(tmp, compress_level=PNG_COMPRESS_LEVEL)
    )


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Convert a float image in [0, 1] to uint8 with rounding (uint8 passes through)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float image to ``size = (width, height)`` with area averaging when shrinking."""
    import cv2

    width, height = size
    shrinking = width < image.shape[1] or height < image.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation).astype(np.float32)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask to ``size = (width, height)``; a pixel is object if half its area is."""
    import cv2

    width, height = size
    area = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    return area >= 0.5


def tile(cells: list[np.ndarray], columns: int, gap: int = 2) -> np.ndarray:
    """Lay equally sized float images ``(h, w, 3)`` row by row on a white sheet.

    ``columns`` cells per row (fewer if there are fewer cells), ``gap`` white pixels after each.
    """
    columns = max(1, min(columns, len(cells)))
    rows = -(-len(cells) // columns)
    h, w = cells[0].shape[:2]
    sheet = np.ones((rows * (h + gap), columns * (w + gap), 3), np.float32)
    for index, cell in enumerate(cells):
        r, c = divmod(index, columns)
        sheet[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = cell
    return sheet
