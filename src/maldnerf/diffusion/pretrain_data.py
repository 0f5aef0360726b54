"""Training data of the tiny base model: rendered random rooms, cut into crops with holes.

The rooms come from :mod:`maldnerf.prepare.procedural` (random layouts, textures, objects and
cameras; never the evaluation room). Room ``i`` is drawn from the random stream
``(ROOM_STREAM, seed, i)``: the first ``rooms`` train, the next ``held_out_rooms`` are only
inpainted to score the model. Rendering runs in single-threaded worker processes; the result
does not depend on their number.

A training crop (at model resolution ``R``, float32 in [0, 1]) is one of two kinds:

- **object removal** (probability ``object_removal``): the window the inpaint stage would cut
  around the view's object mask, dilated by a random 2-8 px (window margin a random 0.2-0.6),
  from the view rendered *without* the object; the hole is the dilated object mask. This is the
  task the base model is used for, with the true background as target. A window larger than
  the image's shorter side is shrunk to it (:func:`.windows.fit_inside`; the hole may then
  reach the crop's edges): a crop holds real pixels only, as the target must be known.
- **random holes**: a random square crop of the view (with or without the object, equally
  likely) with the holes of :mod:`.holes` (rectangles and object-shaped holes).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from dataclasses import dataclass

import numpy as np

from ..masks import dilate
from ..prepare.procedural import RoomViews, render_room
from .holes import HoleSettings, draw_holes, object_shapes, random_window
from .windows import fit_inside, image_to_model, mask_to_model, mask_window

ROOM_STREAM = 7_130_441  # tags the rooms' random streams (apart from every other use of seeds)
DILATION_RANGE = (2, 8)  # object-removal holes: object mask dilated by this many pixels
MARGIN_RANGE = (0.2, 0.6)  # object-removal windows: margin around the mask's bounding box
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class Rooms:
    """Rendered views of several rooms, stacked (``N`` views of ``H × W``)."""

    images: np.ndarray  # (N, H, W, 3) uint8, with the object
    backgrounds: np.ndarray  # (N, H, W, 3) uint8, without the object
    masks: np.ndarray  # (N, H, W) bool, the object

    def __len__(self) -> int:
        return len(self.images)


def _render(job: tuple[int, int, int, int, int, float]) -> RoomViews:
    seed, index, views, width, height, fov = job
    return render_room((ROOM_STREAM, seed, index), views, width, height, fov)


def render_rooms(
    seed: int,
    indices: range,
    views: int,
    size: tuple[int, int],
    fov_degrees: float,
    workers: int = 1,
) -> Rooms:
    """Render rooms ``indices`` of the stream ``seed``, ``views`` views each, ``size = (W, H)``."""
    jobs = [(seed, i, views, size[0], size[1], fov_degrees) for i in indices]
    # Fresh single-threaded workers: NumPy's BLAS threads spin on a busy machine (many times
    # slower), and a forked child would inherit the parent's thread pools.
    saved = {key: os.environ.get(key) for key in BLAS_THREADS}
    os.environ.update(dict.fromkeys(BLAS_THREADS, "1"))
    try:
        context = multiprocessing.get_context("spawn")
        workers = max(1, min(workers, len(jobs)))
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            rendered = list(pool.map(_render, jobs))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Rooms(
        np.concatenate([r.images for r in rendered]),
        np.concatenate([r.backgrounds for r in rendered]),
        np.concatenate([r.masks for r in rendered]),
    )


@dataclass
class PretrainBatch:
    """One step's crops at model resolution."""

    images: np.ndarray  # (B, R, R, 3) float32 in [0, 1]
    holes: np.ndarray  # (B, R, R) bool
    seed: int  # seed of this step's noise and timesteps


def sample_batch(
    rooms: Rooms,
    holes: HoleSettings,
    object_removal: float,
    batch_size: int,
    resolution: int,
    seed: int,
    step: int,
    shapes: list[np.ndarray] | None = None,
) -> PretrainBatch:
    """The crops of ``step``: a pure function of its arguments (``shapes`` default: the rooms'
    object masks, see :func:`.holes.object_shapes`)."""
    shapes = object_shapes(list(rooms.masks)) if shapes is None else shapes
    rng = np.random.default_rng([seed, step])
    images, masks = [], []
    with_object = np.flatnonzero(rooms.masks.any(axis=(1, 2)))
    for _ in range(batch_size):
        if with_object.size and rng.random() < object_removal:
            index = int(with_object[rng.integers(with_object.size)])
            hole = dilate(rooms.masks[index], int(rng.integers(*DILATION_RANGE, endpoint=True)))
            window = mask_window(hole, resolution, float(rng.uniform(*MARGIN_RANGE)))
            window = fit_inside(window, *hole.shape)
            image = rooms.backgrounds[index].astype(np.float32) / 255.0
            images.append(image_to_model(image, window, resolution))
            masks.append(mask_to_model(hole, window, resolution))
            continue
        index = int(rng.integers(len(rooms)))
        source = rooms.images if rng.random() < 0.5 else rooms.backgrounds
        image = source[index].astype(np.float32) / 255.0
        window = random_window(rng, *image.shape[:2], holes.crop_scale, resolution)
        images.append(image_to_model(image, window, resolution))
        masks.append(draw_holes(rng, resolution, holes, shapes, window.size))
    return PretrainBatch(np.stack(images), np.stack(masks), int(rng.integers(2**62)))
