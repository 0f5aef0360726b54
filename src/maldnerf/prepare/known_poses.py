"""Read poses that come with a scene: ``transforms.json`` or LLFF ``poses_bounds.npy``.

Both are converted to camera-to-world matrices in the OpenGL convention (see
:mod:`maldnerf.cameras`) and pinhole intrinsics scaled to the images actually used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError


@dataclass
class KnownPoses:
    """Poses keyed by view name, with intrinsics in pixels of a ``width × height`` image."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    camera_to_world: dict[str, np.ndarray]
    bounds: dict[str, tuple[float, float]]  # near/far per view; empty when unknown

    def scaled(self, width: int, height: int) -> KnownPoses:
        """The same poses with intrinsics rescaled to ``width × height`` images."""
        sx, sy = width / self.width, height / self.height
        return KnownPoses(
            width,
            height,
            self.fx * sx,
            self.fy * sy,
            self.cx * sx,
            self.cy * sy,
            self.camera_to_world,
            self.bounds,
        )


def find_poses_file(root: Path) -> Path | None:
    """``transforms.json`` or ``poses_bounds.npy`` in ``root``, if any (the former wins)."""
    for name in ("transforms.json", "poses_bounds.npy"):
        if (root / name).is_file():
            return root / name
    return None


def read_known_poses(
    path: Path, names_in_order: list[str], image_size: tuple[int, int]
) -> KnownPoses:
    """Read ``path`` for the views ``names_in_order``.

    ``names_in_order`` is every view of the scene in sorted file order (LLFF files have one row
    per view in that order); ``image_size = (width, height)`` of the original images.
    """
    if path.suffix == ".npy":
        return _read_llff(path, names_in_order, image_size)
    return _read_transforms(path, names_in_order, image_size)


def _check_matrix(path: Path, name: str, matrix: np.ndarray) -> np.ndarray:
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise UserError(f"{path}: pose of view {name} is not a finite 4x4 matrix; fix or remove it")
    return matrix


def _read_llff(path: Path, names: list[str], image_size: tuple[int, int]) -> KnownPoses:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 17:
        raise UserError(
            f"{path}: expected an N x 17 LLFF poses_bounds array, found shape {data.shape}"
        )
    if len(data) != len(names):
        raise UserError(
            f"{path}: {len(data)} poses for {len(names)} images; the file needs one row per image "
            "in sorted order"
        )
    poses = data[:, :15].reshape(-1, 3, 5)
    height, width, focal = poses[0, :, 4]
    _check_aspect(path, (float(width), float(height)), image_size)
    c2w, bounds = {}, {}
    for name, pose, row in zip(names, poses, data):
        # LLFF columns are (down, right, back); OpenGL wants (right, up, back).
        matrix = np.eye(4)
        matrix[:3, 0] = pose[:, 1]
        matrix[:3, 1] = -pose[:, 0]
        matrix[:3, 2] = pose[:, 2]
        matrix[:3, 3] = pose[:, 3]
        c2w[name] = _check_matrix(path, name, matrix)
        bounds[name] = (float(row[15]), float(row[16]))
    return KnownPoses(
        int(round(width)),
        int(round(height)),
        float(focal),
        float(focal),
        width / 2.0,
        height / 2.0,
        c2w,
        bounds,
    )


def _check_aspect(path: Path, recorded: tuple[float, float], image_size: tuple[int, int]) -> None:
    """LLFF stores one focal length for an (H, W) that the images may be a downscaled copy of:
    the images must have that aspect ratio (to a pixel of rounding), or fx and fy would differ
    silently."""
    width, height = image_size
    if min(recorded) <= 0:
        raise UserError(
            f"{path}: image size {recorded[1]:g} x {recorded[0]:g} (H x W) is not positive"
        )
    scaled_height = recorded[1] * width / recorded[0]
    if abs(scaled_height - height) > 1.0:
        raise UserError(
            f"{path}: poses recorded for {recorded[0]:g}x{recorded[1]:g} images (W x H) but the "
            f"images are {width}x{height}, another aspect ratio; use the images the poses were "
            "computed for (or a uniformly downscaled copy), or use 'poses: colmap'"
        )


def _read_transforms(path: Path, names: list[str], image_size: tuple[int, int]) -> KnownPoses:
    try:
        data = json.loads(path.read_text())
        frames = data["frames"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a valid transforms.json ({exc})") from None
    width = int(data.get("w", image_size[0]))
    height = int(data.get("h", image_size[1]))
    for key in ("k1", "k2", "k3", "p1", "p2"):
        if abs(float(data.get(key, 0.0))) > 1e-9:
            raise UserError(
                f"{path}: distortion coefficient {key} is not zero; undistort the images first "
                "or use 'poses: colmap'"
            )
    if "fl_x" in data:
        fx = float(data["fl_x"])
        fy = float(data.get("fl_y", fx))
    elif "camera_angle_x" in data:
        fx = 0.5 * width / np.tan(0.5 * float(data["camera_angle_x"]))
        fy = (
            0.5 * height / np.tan(0.5 * float(data["camera_angle_y"]))
            if "camera_angle_y" in data
            else fx
        )
    else:
        raise UserError(f"{path}: no intrinsics (fl_x or camera_angle_x); add them")
    cx = float(data.get("cx", width / 2.0))
    cy = float(data.get("cy", height / 2.0))
    c2w, bounds = {}, {}
    for frame in frames:
        name = Path(str(frame.get("file_path", ""))).stem
        try:
            matrix = np.asarray(frame["transform_matrix"], dtype=np.float64)
        except (KeyError, ValueError, TypeError):
            raise UserError(f"{path}: frame {name or '?'} has no valid transform_matrix") from None
        c2w[name] = _check_matrix(path, name, matrix)
        if "near" in frame and "far" in frame:
            bounds[name] = (float(frame["near"]), float(frame["far"]))
    missing = [n for n in names if n not in c2w]
    if missing:
        raise UserError(
            f"{path}: no pose for image(s) {', '.join(missing[:5])}"
            f"{' and more' if len(missing) > 5 else ''}; add their frames or use 'poses: colmap'"
        )
    c2w = {n: c2w[n] for n in names}
    bounds = {n: bounds[n] for n in names if n in bounds}
    return KnownPoses(width, height, fx, fy, cx, cy, c2w, bounds)
