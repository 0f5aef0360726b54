"""Training views and their dilated masks, read from the poses and masks stages' artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError


@dataclass
class TrainingView:
    """One training view: float32 RGB ``(H, W, 3)`` in [0, 1] and its dilated object mask."""

    name: str
    path: Path
    image: np.ndarray
    mask: np.ndarray


def check_view(name: str, image: np.ndarray, mask: np.ndarray, resolution: int) -> None:
    """Raise a :class:`UserError` for an empty mask, a size mismatch or a too small image."""
    if mask.shape != image.shape[:2]:
        raise UserError(
            f"view {name}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
            f"{image.shape[1]}x{image.shape[0]}; rerun the masks stage"
        )
    if not mask.any():
        raise UserError(f"view {name}: mask has no object pixels; mark the object in its mask")
    if min(image.shape[:2]) < resolution:
        raise UserError(
            f"view {name}: image is {image.shape[1]}x{image.shape[0]} pixels, smaller than "
            f"diffusion.resolution {resolution}; lower diffusion.resolution (a multiple of 8) "
            "or use larger images"
        )


def load_training_views(transforms: Path, masks_dir: Path, resolution: int) -> list[TrainingView]:
    """Every training view of ``transforms`` with its dilated mask from ``masks_dir``, checked."""
    from ..cameras import load_transforms
    from ..images import read_image
    from ..masks import load_masks

    cameras = load_transforms(transforms)
    masks = load_masks(masks_dir)
    frames = cameras.split("train")
    if not frames:
        raise UserError(f"{transforms}: no training views; rerun the poses stage")
    views = []
    for frame in frames:
        if frame.name not in masks.train:
            raise UserError(
                f"{masks_dir}: no mask for training view {frame.name}; rerun the masks stage"
            )
        image = read_image(frame.image)
        mask = masks.train[frame.name]
        check_view(frame.name, image, mask, resolution)
        views.append(TrainingView(frame.name, frame.image, image, mask))
    return views
