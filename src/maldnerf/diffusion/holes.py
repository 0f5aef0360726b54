"""Random training crops and holes for the self-supervised inpainting objective.

Both the pretraining of the tiny base and the scene customisation train the model to fill holes
in crops of images: a crop is a random square window of a view resized to the model resolution;
its holes are 1-3 random rectangles (the paper's choice) and, with some probability, a hole
shaped like an object mask (the shape the model fills at inference), placed at random.
Everything is drawn from a given :class:`numpy.random.Generator`, so a step's crops are a pure
function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..settings import require
from .windows import Window


@dataclass(frozen=True)
class HoleSettings:
    """How the holes of a crop are drawn (fields shared by pretrain and customize settings)."""

    rectangles: tuple[int, int]
    rectangle_size: tuple[float, float]
    object_shaped_holes: float
    crop_scale: tuple[float, float]

    def __post_init__(self) -> None:
        require(
            1 <= self.rectangles[0] <= self.rectangles[1],
            "rectangles must be (min, max) with 1 <= min <= max",
        )
        require(
            0 < self.rectangle_size[0] <= self.rectangle_size[1] <= 1,
            "rectangle_size must be (min, max) with 0 < min <= max <= 1",
        )
        require(
            0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
            "crop_scale must be (min, max) with 0 < min <= max <= 1",
        )
        require(0 <= self.object_shaped_holes <= 1, "object_shaped_holes must be in [0, 1]")


def object_shapes(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Each non-empty mask (bool ``(H, W)``) cut to its bounding box: hole shapes for training."""
    shapes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        if ys.size:
            shapes.append(mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
    return shapes


def random_window(
    rng: np.random.Generator,
    height: int,
    width: int,
    crop_scale: tuple[float, float],
    resolution: int,
) -> Window:
    """A square window inside an ``height × width`` image, its side a random fraction
    (``crop_scale``) of the shorter side, at least the model resolution where the image allows."""
    short = min(height, width)
    side = int(round(rng.uniform(*crop_scale) * short))
    side = min(max(side, resolution), short)
    return Window(
        int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1)), side
    )


def draw_holes(
    rng: np.random.Generator,
    resolution: int,
    settings: HoleSettings,
    shapes: list[np.ndarray],
    window_side: int,
) -> np.ndarray:
    """Holes of one crop at model resolution, bool ``(R, R)``.

    ``shapes`` are object masks at image scale (see :func:`object_shapes`); one is scaled by the
    crop's zoom (``resolution / window_side``) times ±20% and placed at random.
    """
    import cv2

    hole = np.zeros((resolution, resolution), np.uint8)
    for _ in range(int(rng.integers(settings.rectangles[0], settings.rectangles[1] + 1))):
        w, h = (max(1, round(rng.uniform(*settings.rectangle_size) * resolution)) for _ in "wh")
        x, y = int(rng.integers(0, resolution - w + 1)), int(rng.integers(0, resolution - h + 1))
        cv2.rectangle(hole, (x, y), (x + w - 1, y + h - 1), 1, thickness=-1)
    if shapes and rng.random() < settings.object_shaped_holes:
        shape = shapes[int(rng.integers(len(shapes)))]
        scale = resolution / window_side * rng.uniform(0.8, 1.2)
        h = min(resolution, max(1, round(shape.shape[0] * scale)))
        w = min(resolution, max(1, round(shape.shape[1] * scale)))
        resized = cv2.resize(shape.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        x, y = int(rng.integers(0, resolution - w + 1)), int(rng.integers(0, resolution - h + 1))
        hole[y : y + h, x : x + w] |= resized
    return hole > 0
