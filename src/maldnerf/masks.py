"""The ``masks`` stage: validated, binarised, dilated object masks.

Input: the poses stage's ``transforms.json`` (each frame names its image and object mask) and,
for masks from a 3D box, the box in the coordinates of those poses. Output folder
``results/{scene}/masks/``::

    train/<name>.png    dilated object mask of each training view, 0/255 (255 = object)
    test/<name>.png     dilated mask of where the object would be in each test view (if known)
    masks.json          {"dilation": px, "source": ..., "coverage": {name: fraction}, "test_masks": bool}
    contact_sheet.png   each training view | the same with its mask overlaid in red, for a quick look

Read back with :func:`load_masks`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from . import atomic
from .errors import UserError
from .settings import require

if TYPE_CHECKING:
    from .cameras import Cameras
    from .scene import Scene

log = logging.getLogger(__name__)


@dataclass
class BoxSettings:
    """An oriented 3D box around the object, in the world frame of the poses."""

    center: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    """Box centre (x, y, z), world units."""
    half_size: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    """Half extents along the box's own x, y, z axes, world units."""
    yaw: float = 0.0
    """Rotation of the box about the world +y axis, radians."""

    def __post_init__(self) -> None:
        require(
            len(self.center) == 3 and len(self.half_size) == 3, "center and half_size need 3 values"
        )
        require(all(h > 0 for h in self.half_size), "half_size values must be > 0")


@dataclass
class MaskSettings:
    """Settings the masks stage reads."""

    dilation: int = 5
    """Grow each mask by this many pixels (a disc), so the object's edge is masked too."""
    source: Literal["files", "box", "scene_box"] = "files"
    """``files``: the masks given with the images; ``box``: project ``box`` into every view;
    ``scene_box``: project the object box the scene comes with (synthetic scenes)."""
    box: BoxSettings = field(default_factory=BoxSettings)
    """The object's 3D box in the poses' world frame, for ``source: box``."""

    def __post_init__(self) -> None:
        require(0 <= self.dilation <= 200, "dilation must be between 0 and 200 pixels")


@dataclass
class Masks:
    """Dilated masks read back from a masks folder, keyed by view name (bool ``(H, W)``)."""

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    dilation: int


def check_coverage(mask: np.ndarray, path: Path | str) -> None:
    """Raise a :class:`UserError` for an empty mask or one that covers the whole image."""
    if not mask.any():
        raise UserError(f"{path}: mask is empty (no object pixels); mark the object in white (255)")
    if mask.all():
        raise UserError(f"{path}: mask covers the whole image; mark only the object in white (255)")


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a bool mask by ``pixels`` using a disc-shaped structuring element."""
    import cv2

    if pixels <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def box_corners(box: BoxSettings) -> np.ndarray:
    """The 8 corners ``(8, 3)`` of an oriented box; corner i has sign bits (x, y, z) of i."""
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    signs = np.array([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)]) * 2.0 - 1.0
    return (signs * np.asarray(box.half_size)) @ rotation.T + np.asarray(box.center)


_FACES = [(0, 1, 3, 2), (4, 5, 7, 6), (0, 1, 5, 4), (2, 3, 7, 6), (0, 2, 6, 4), (1, 3, 7, 5)]


def project_box(
    corners: np.ndarray,
    camera_to_world: np.ndarray,
    intrinsics: np.ndarray,
    width: int,
    height: int,
    near: float = 1e-3,
) -> np.ndarray:
    """Silhouette of a box (its ``(8, 3)`` world corners, ordered as :func:`box_corners`)
    seen by an OpenGL camera, as a bool ``(H, W)`` mask.

    Each face is clipped against the plane ``near`` in front of the camera, projected and
    filled; the union of the faces is the silhouette.
    """
    import cv2

    world_to_camera = np.linalg.inv(camera_to_world)
    camera = corners @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    canvas = np.zeros((height, width), np.uint8)
    for face in _FACES:
        polygon = _clip_near(camera[list(face)], near)
        if len(polygon) < 3:
            continue
        depth = -polygon[:, 2]  # OpenGL: in front of the camera means z < 0
        u = intrinsics[0, 0] * polygon[:, 0] / depth + intrinsics[0, 2]
        v = -intrinsics[1, 1] * polygon[:, 1] / depth + intrinsics[1, 2]
        points = np.round(np.stack([u, v], axis=1) * 16).astype(np.int32)  # 4 bits sub-pixel
        cv2.fillConvexPoly(canvas, points, 1, lineType=cv2.LINE_8, shift=4)
    return canvas > 0


def _clip_near(polygon: np.ndarray, near: float) -> np.ndarray:
    """Sutherland–Hodgman clip of a camera-space polygon to ``z <= -near``."""
    result = []
    for i in range(len(polygon)):
        a, b = polygon[i], polygon[(i + 1) % len(polygon)]
        a_in, b_in = a[2] <= -near, b[2] <= -near
        if a_in:
            result.append(a)
        if a_in != b_in:
            t = (-near - a[2]) / (b[2] - a[2])
            result.append(a + t * (b - a))
    return np.array(result)


def contact_sheet(
    images: list[np.ndarray], masks: list[np.ndarray], columns: int = 3, thumb_width: int = 160
) -> np.ndarray:
    """Grid of thumbnail pairs, each image beside itself with its mask tinted red and outlined
    (float RGB)."""
    import cv2

    from .images import resize_image, tile

    thumbs = []
    for image, mask in zip(images, masks):
        overlay = image.copy()
        overlay[mask] = 0.5 * overlay[mask] + 0.5 * np.array([1.0, 0.0, 0.0])
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        overlay = np.ascontiguousarray(overlay)
        cv2.drawContours(overlay, contours, -1, (1.0, 1.0, 0.0), 1)
        height = max(1, round(image.shape[0] * thumb_width / image.shape[1]))
        pair = [resize_image(x, (thumb_width, height)) for x in (image, overlay)]
        thumbs.append(np.concatenate([pair[0], np.ones((height, 2, 3)), pair[1]], axis=1))
    return tile(thumbs, columns)


def scene_box_corners(scene: Scene, cameras: Cameras) -> np.ndarray:
    """Corners of the scene's own object box in the world frame of ``cameras``.

    The box is given in the frame of the scene's known poses; poses from COLMAP live in a
    frame of their own (arbitrary scale and orientation), so the box is mapped through the
    similarity that aligns the known camera centres to those of ``cameras`` (the identity
    when ``cameras`` are the known poses).
    """
    from .cameras import load_transforms, umeyama

    if scene.object_box is None or scene.known_poses is None:
        raise UserError(
            "masks.source: scene_box, but this scene has no object box with known poses; use "
            "source: box with masks.box.center and half_size in the frame of transforms.json"
        )
    box = scene.object_box
    corners = box_corners(BoxSettings(box["center"], box["half_size"], box["yaw"]))
    known = load_transforms(scene.known_poses)
    names = [f.name for f in cameras.frames]
    source = np.stack([known.frame(n).camera_to_world[:3, 3] for n in names])
    target = np.stack([cameras.frame(n).camera_to_world[:3, 3] for n in names])
    scale, rotation, translation = umeyama(source, target)
    return scale * corners @ rotation.T + translation


def run(settings: MaskSettings, transforms: Path, scene_dir: Path, output: Path) -> None:
    """Write the masks folder for the scene whose cameras are in ``transforms``."""
    from .cameras import load_transforms
    from .images import read_image, read_mask, write_image, write_mask
    from .scene import load_scene

    cameras = load_transforms(transforms)
    corners = None
    if settings.source == "box":
        corners = box_corners(settings.box)
    elif settings.source == "scene_box":
        corners = scene_box_corners(load_scene(scene_dir), cameras)
    coverage: dict[str, float] = {}
    sheet_images, sheet_masks = [], []
    test_masks = True
    with atomic.output_dir(output) as tmp:
        for frame in cameras.frames:
            if corners is not None:
                mask = project_box(
                    corners,
                    frame.camera_to_world,
                    cameras.intrinsics,
                    cameras.width,
                    cameras.height,
                )
                where = f"masks.{settings.source} (view {frame.name})"
                if frame.split == "train" and not mask.any():
                    raise UserError(
                        f"{where}: the box projects outside this view (empty mask); give "
                        f"masks.box in the world frame of {transforms}"
                    )
            elif frame.mask is None:
                if frame.split == "train":
                    raise UserError(
                        f"{transforms}: training view {frame.name} has no mask; rerun prepare"
                    )
                test_masks = False
                continue
            else:
                mask = read_mask(frame.mask)
                where = str(frame.mask)
            if mask.shape != (cameras.height, cameras.width):
                raise UserError(
                    f"{where}: mask is {mask.shape[1]}x{mask.shape[0]}, images are "
                    f"{cameras.width}x{cameras.height}; rerun prepare"
                )
            if frame.split == "train":
                check_coverage(mask, where)
            grown = dilate(mask, settings.dilation)
            if frame.split == "train" and grown.all():
                raise UserError(
                    f"{where}: after dilation by {settings.dilation} px the mask covers the "
                    "whole image; lower masks.dilation"
                )
            write_mask(tmp / frame.split / f"{frame.name}.png", grown)
            coverage[frame.name] = float(grown.mean())
            if frame.split == "train":
                sheet_images.append(read_image(frame.image))
                sheet_masks.append(grown)
        write_image(tmp / "contact_sheet.png", contact_sheet(sheet_images, sheet_masks))
        atomic.write_json(
            tmp / "masks.json",
            {
                "dilation": settings.dilation,
                "source": settings.source,
                "test_masks": test_masks,
                "coverage": coverage,
            },
        )
    train_cov = [coverage[f.name] for f in cameras.split("train")]
    log.info(
        "masks: %d training masks, coverage %.1f%%..%.1f%% after %d px dilation",
        len(train_cov),
        100 * min(train_cov),
        100 * max(train_cov),
        settings.dilation,
    )


def load_masks(folder: str | Path) -> Masks:
    """Read a masks folder written by :func:`run`."""
    from .images import read_mask

    folder = Path(folder)
    summary = folder / "masks.json"
    if not summary.is_file():
        raise UserError(f"{summary}: not found; run the masks stage first")
    info = json.loads(summary.read_text())
    train = {p.stem: read_mask(p) for p in sorted((folder / "train").glob("*.png"))}
    test_dir = folder / "test"
    test = (
        {p.stem: read_mask(p) for p in sorted(test_dir.glob("*.png"))} if test_dir.is_dir() else {}
    )
    return Masks(train, test, int(info["dilation"]))
