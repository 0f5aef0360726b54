"""The ``prepare`` stage: turn a scene source into the prepared-scene folder.

Sources: ``synthetic`` (generated from a seed, see :mod:`.synthetic`) or a folder in one of the
layouts of :mod:`.folder`. Output: the folder described in :mod:`maldnerf.scene`. Images are
converted to 8-bit RGB PNG and downscaled by an integer factor; masks are converted to 0/255
PNG at the same size (not yet dilated: that is the masks stage's job). Known poses, when the
source has them, are converted to ``known_poses.json`` in :mod:`maldnerf.cameras` format.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .. import atomic
from ..cameras import Cameras, Frame, write_transforms
from ..errors import UserError
from ..images import read_image, read_mask, resize_image, resize_mask, write_image, write_mask
from ..masks import check_coverage
from ..scene import MANIFEST
from ..settings import require
from . import folder as folder_layouts
from .known_poses import KnownPoses, find_poses_file, read_known_poses
from .synthetic import SyntheticSettings, generate

log = logging.getLogger(__name__)


@dataclass
class PrepareSettings:
    """Settings the prepare stage reads (one scene's entry in config.yaml)."""

    source: str = "synthetic"
    """``synthetic`` or the path of a scene folder."""
    layout: Literal["auto", "plain", "spinnerf"] = "auto"
    """Folder layout; ``auto`` picks ``plain`` if ``images/`` exists, else ``spinnerf``."""
    downscale: int = 1
    """Integer factor by which images, masks and intrinsics are shrunk."""
    spinnerf_test_views: int = 40
    """SPIn-NeRF layout: the first this-many views (sorted by name) are test views."""
    min_train_views: int = 3
    """Fewer training views than this is an error."""
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)
    """Generator settings, used when ``source`` is ``synthetic``."""

    def __post_init__(self) -> None:
        require(self.downscale >= 1, "downscale must be an integer >= 1")
        require(self.spinnerf_test_views >= 0, "spinnerf_test_views must be >= 0")
        require(self.min_train_views >= 2, "min_train_views must be >= 2")


def run(settings: PrepareSettings, name: str, output: Path) -> None:
    """Write the prepared scene ``name`` to ``output`` (replaced atomically)."""
    with atomic.output_dir(output) as tmp:
        if settings.source == "synthetic":
            manifest = _prepare_synthetic(settings.synthetic, settings.downscale, tmp)
        else:
            manifest = _prepare_folder(settings, Path(settings.source), tmp)
        manifest = {"name": name, **manifest}
        atomic.write_json(tmp / MANIFEST, manifest)
    log.info(
        "prepared scene %s: %d training and %d test views of %dx%d pixels",
        name,
        len(manifest["train"]),
        len(manifest["test"]),
        manifest["width"],
        manifest["height"],
    )


def _entry(name: str, image: str, mask: str | None) -> dict[str, str | None]:
    return {"name": name, "image": image, "mask": mask}


def _prepare_synthetic(settings: SyntheticSettings, downscale: int, out: Path) -> dict:
    train, test, intrinsics, scene = generate(settings)
    width, height = settings.width // downscale, settings.height // downscale
    scale = np.array([width / settings.width, height / settings.height])
    frames, manifest_train, manifest_test = [], [], []
    for split, views, entries in (("train", train, manifest_train), ("test", test, manifest_test)):
        image_dir, mask_dir = ("images", "masks") if split == "train" else ("test", "test_masks")
        for index, view in enumerate(views):
            name = f"{split}_{index:03d}"
            image = resize_image(view.image, (width, height)) if downscale > 1 else view.image
            mask = resize_mask(view.mask, (width, height)) if downscale > 1 else view.mask
            write_image(out / image_dir / f"{name}.png", image)
            write_mask(out / mask_dir / f"{name}.png", mask)
            if view.background is not None:
                background = view.background
                background = (
                    resize_image(background, (width, height)) if downscale > 1 else background
                )
                write_image(out / "background" / f"{name}.png", background)
            entries.append(_entry(name, f"{image_dir}/{name}.png", f"{mask_dir}/{name}.png"))
            frames.append(
                Frame(
                    name,
                    split,
                    out / image_dir / f"{name}.png",
                    out / mask_dir / f"{name}.png",
                    view.camera_to_world,
                    view.depth_range[0],
                    view.depth_range[1],
                )
            )
    fx, fy = intrinsics[0, 0] * scale[0], intrinsics[1, 1] * scale[1]
    cx, cy = intrinsics[0, 2] * scale[0], intrinsics[1, 2] * scale[1]
    write_transforms(out / "known_poses.json", Cameras(width, height, fx, fy, cx, cy, frames))
    box = scene.object_box
    return {
        "source": "synthetic",
        "width": width,
        "height": height,
        "train": manifest_train,
        "test": manifest_test,
        "known_poses": "known_poses.json",
        "background": "background",
        "object_box": {
            "center": box.center.tolist(),
            "half_size": box.half.tolist(),
            "yaw": box.yaw,
        },
        "extra": {"synthetic": asdict(settings)},
    }


def _prepare_folder(settings: PrepareSettings, root: Path, out: Path) -> dict:
    layout = folder_layouts.detect_layout(root, settings.layout)
    if layout == "plain":
        views = folder_layouts.read_plain(root, settings.min_train_views)
    else:
        views = folder_layouts.read_spinnerf(
            root, settings.spinnerf_test_views, settings.min_train_views
        )
    reference = views.train[0].image
    original_size: tuple[int, int] | None = None
    size: tuple[int, int] | None = None
    entries: dict[str, list] = {"train": [], "test": []}
    for split, items in (("train", views.train), ("test", views.test)):
        image_dir, mask_dir = ("images", "masks") if split == "train" else ("test", "test_masks")
        for view in items:
            image = read_image(view.image)
            here = (image.shape[1], image.shape[0])
            if original_size is None:
                original_size = here
                size = (here[0] // settings.downscale, here[1] // settings.downscale)
                if min(size) < 16:
                    raise UserError(
                        f"{view.image}: {here[0]}x{here[1]} pixels is too small for downscale {settings.downscale}"
                    )
            elif here != original_size:
                raise UserError(
                    f"{view.image}: size {here[0]}x{here[1]} differs from {reference.name} "
                    f"({original_size[0]}x{original_size[1]}); all views must have the same size"
                )
            assert size is not None
            write_image(
                out / image_dir / f"{view.name}.png",
                resize_image(image, size) if size != here else image,
            )
            mask_rel = None
            if view.mask is not None:
                mask = read_mask(view.mask)
                if (mask.shape[1], mask.shape[0]) != here:
                    raise UserError(
                        f"{view.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                        f"{here[0]}x{here[1]}; masks must match their image's size"
                    )
                mask = resize_mask(mask, size) if size != here else mask
                if split == "train":
                    check_coverage(mask, view.mask)
                write_mask(out / mask_dir / f"{view.name}.png", mask)
                mask_rel = f"{mask_dir}/{view.name}.png"
            entries[split].append(_entry(view.name, f"{image_dir}/{view.name}.png", mask_rel))
    assert size is not None and original_size is not None
    manifest = {
        "source": str(root),
        "layout": layout,
        "width": size[0],
        "height": size[1],
        "train": entries["train"],
        "test": entries["test"],
        "known_poses": None,
        "background": None,
        "object_box": None,
    }
    poses_file = find_poses_file(root)
    if poses_file is not None:
        all_views = sorted(views.train + views.test, key=lambda v: v.image.name)
        known = read_known_poses(poses_file, [v.name for v in all_views], original_size)
        _write_known(known.scaled(*size), views, out)
        manifest["known_poses"] = "known_poses.json"
    return manifest


def _write_known(known: KnownPoses, views: folder_layouts.FolderScene, out: Path) -> None:
    bounds = dict(known.bounds)
    if len(bounds) < len(known.camera_to_world):
        near, far = _estimate_bounds(np.stack(list(known.camera_to_world.values())))
        log.warning(
            "no depth bounds in the poses file: estimated near=%.3g, far=%.3g from the camera layout",
            near,
            far,
        )
        bounds = {name: bounds.get(name, (near, far)) for name in known.camera_to_world}
    frames = []
    for split, items in (("train", views.train), ("test", views.test)):
        image_dir, mask_dir = ("images", "masks") if split == "train" else ("test", "test_masks")
        for view in items:
            mask = out / mask_dir / f"{view.name}.png" if view.mask is not None else None
            frames.append(
                Frame(
                    view.name,
                    split,
                    out / image_dir / f"{view.name}.png",
                    mask,
                    known.camera_to_world[view.name],
                    *bounds[view.name],
                )
            )
    write_transforms(
        out / "known_poses.json",
        Cameras(known.width, known.height, known.fx, known.fy, known.cx, known.cy, frames),
    )


def _estimate_bounds(camera_to_world: np.ndarray) -> tuple[float, float]:
    """Near/far for poses without bounds, from the point the optical axes pass closest to.

    The distance ``d`` from the cameras to that point sets the scale: near = 0.05 d, far = 5 d.
    """
    centres = camera_to_world[:, :3, 3]
    axes = -camera_to_world[:, :3, 2]
    projector = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]
    focus = np.linalg.lstsq(
        projector.sum(0), np.einsum("nij,nj->i", projector, centres), rcond=None
    )[0]
    distance = float(np.median(np.linalg.norm(centres - focus, axis=1)))
    distance = distance if distance > 1e-6 else 1.0
    return 0.05 * distance, 5.0 * distance
