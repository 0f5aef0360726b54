"""Cameras in nerfstudio's ``transforms.json`` format: the poses stage's artifact.

Convention: every ``transform_matrix`` is a 4×4 camera-to-world matrix in the OpenGL /
nerfstudio convention — camera x points right, y up, and the camera looks along -z. (COLMAP
and OpenCV use x right, y down, looking along +z; :func:`opencv_to_opengl` converts.)
Intrinsics are in pixels of the stored images: ``fl_x, fl_y, cx, cy, w, h``; images are
undistorted, so ``camera_model`` is ``OPENCV`` with zero distortion coefficients.

The split and the masks mean to nerfstudio what they mean to us:

- top-level ``train_filenames``, ``val_filenames`` and ``test_filenames`` list the ``file_path``
  of each split's frames (nerfstudio's dataparser reads these instead of its own 90/10 split);
  validation and test are both our test views (photos without the object);
- ``mask_path`` is nerfstudio's mask: nonzero = a pixel to use. The poses stage writes these
  *keep masks* (0 on the object, 255 elsewhere; all 255 for test views) for every frame, or
  for none;
- ``object_mask_path`` is ours: the object mask (255 = object, not dilated), absent where
  unknown. nerfstudio ignores it.

Besides nerfstudio's keys the file carries, per frame, ``name``, ``split`` (``train`` or
``test``) and ``near``/``far`` (depth bounds along the optical axis, world units, from the
sparse points), and at the top level ``near``/``far`` over all frames and ``convention`` (this
paragraph's first sentence in one line). Paths are relative to the folder holding the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic
from .errors import UserError

SPLIT_KEYS = {"train_filenames": "train", "val_filenames": "test", "test_filenames": "test"}
"""nerfstudio's split lists and which of our splits each holds."""

CONVENTION = "camera-to-world 4x4, OpenGL/nerfstudio: x right, y up, camera looks along -z"

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def opencv_to_opengl(camera_to_world: np.ndarray) -> np.ndarray:
    """Convert camera-to-world matrices from OpenCV axes to OpenGL axes (and back)."""
    return camera_to_world @ OPENCV_TO_OPENGL


@dataclass
class Frame:
    """One camera of the scene."""

    name: str
    split: str  # "train" or "test"
    image: Path  # absolute
    mask: Path | None  # absolute, the object mask (255 = object, not dilated): object_mask_path
    camera_to_world: np.ndarray  # (4, 4) float64, OpenGL convention
    near: float
    far: float
    keep_mask: Path | None = None  # absolute, nerfstudio's mask_path (nonzero = pixel to use)


@dataclass
class Cameras:
    """Shared pinhole intrinsics (pixels) and the frames of a scene."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    frames: list[Frame]

    @property
    def intrinsics(self) -> np.ndarray:
        """The 3×3 intrinsics matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def split(self, name: str) -> list[Frame]:
        """Frames of one split, in file order."""
        return [f for f in self.frames if f.split == name]

    def frame(self, name: str) -> Frame:
        for f in self.frames:
            if f.name == name:
                return f
        raise KeyError(name)


def write_transforms(path: str | Path, cameras: Cameras) -> Path:
    """Write ``cameras`` as ``transforms.json`` at ``path`` (paths made relative to it)."""
    path = Path(path)
    base = path.parent.resolve()

    def rel(p: Path) -> str:
        return Path(_relpath(p.resolve(), base)).as_posix()

    frames = []
    for f in cameras.frames:
        item: dict[str, Any] = {
            "name": f.name,
            "split": f.split,
            "file_path": rel(f.image),
            "transform_matrix": np.asarray(f.camera_to_world, dtype=float).tolist(),
            "near": float(f.near),
            "far": float(f.far),
        }
        if f.keep_mask is not None:
            item["mask_path"] = rel(f.keep_mask)
        if f.mask is not None:
            item["object_mask_path"] = rel(f.mask)
        frames.append(item)
    keeps = sum(f.keep_mask is not None for f in cameras.frames)
    if keeps not in (0, len(cameras.frames)):
        raise ValueError(f"{keeps} of {len(cameras.frames)} frames have a keep mask: all or none")
    splits = {
        key: [item["file_path"] for item in frames if item["split"] == split]
        for key, split in SPLIT_KEYS.items()
    }
    data = {
        "camera_model": "OPENCV",
        "convention": CONVENTION,
        "w": cameras.width,
        "h": cameras.height,
        "fl_x": cameras.fx,
        "fl_y": cameras.fy,
        "cx": cameras.cx,
        "cy": cameras.cy,
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "near": min(f.near for f in cameras.frames),
        "far": max(f.far for f in cameras.frames),
        **splits,
        "frames": frames,
    }
    return atomic.write_json(path, data)


def _relpath(target: Path, base: Path) -> str:
    import os

    return os.path.relpath(target, base)


def load_transforms(path: str | Path) -> Cameras:
    """Read a ``transforms.json`` written by :func:`write_transforms` and check it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found; run the poses stage first")
    try:
        data = json.loads(path.read_text())
        base = path.parent
        frames = []
        for item in data["frames"]:
            matrix = np.asarray(item["transform_matrix"], dtype=np.float64)
            if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
                raise UserError(
                    f"{path}: frame {item.get('name')} has a non-finite or non-4x4 "
                    "transform_matrix; rerun the poses stage (or fix the scene's known poses)"
                )
            frames.append(
                Frame(
                    name=item["name"],
                    split=item["split"],
                    image=base / item["file_path"],
                    mask=base / item["object_mask_path"] if item.get("object_mask_path") else None,
                    camera_to_world=matrix,
                    near=float(item["near"]),
                    far=float(item["far"]),
                    keep_mask=base / item["mask_path"] if item.get("mask_path") else None,
                )
            )
        return Cameras(
            width=int(data["w"]),
            height=int(data["h"]),
            fx=float(data["fl_x"]),
            fy=float(data["fl_y"]),
            cx=float(data["cx"]),
            cy=float(data["cy"]),
            frames=frames,
        )
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{path}: not a valid transforms file ({exc}); rerun the poses stage"
        ) from None


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``(scale, rotation, translation)`` minimising ``|s R x + t - y|^2`` over points.

    ``source`` and ``target`` are ``(N, 3)`` arrays of corresponding points, N >= 3.
    """
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    covariance = xt.T @ xs / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rotation = u @ sign @ vt
    variance = (xs**2).sum() / len(source)
    scale = float(np.trace(np.diag(singular) @ sign) / variance)
    translation = mu_t - scale * rotation @ mu_s
    return scale, rotation, translation
