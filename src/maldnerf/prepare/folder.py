"""Find the views of a user's scene folder.

Two layouts are understood:

``plain``::

    images/<name>.<ext>        training views, with the object
    masks/<name>.<ext>         object mask of each training view (same base name)
    test/<name>.<ext>          optional: ground-truth views without the object
    test_masks/<name>.<ext>    optional: where the object would be in each test view

``spinnerf`` (the SPIn-NeRF data set)::

    images_4/<name>.png        all views; in sorted order the first ``n_test`` are test views
    images_4/label/<name>.png  object masks of all views (nonzero = object)

Known poses, when present, sit beside these as ``transforms.json`` (nerfstudio / instant-ngp)
or ``poses_bounds.npy`` (LLFF; one row per view of the full sorted image list).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..images import list_images


@dataclass
class FolderView:
    name: str
    image: Path
    mask: Path | None


@dataclass
class FolderScene:
    layout: str
    train: list[FolderView]
    test: list[FolderView]


def detect_layout(root: Path, layout: str) -> str:
    """Resolve ``auto`` to ``plain`` or ``spinnerf`` from the folders present."""
    if not root.is_dir():
        raise UserError(
            f"{root}: scene folder not found; check the scene's 'source' in config.yaml"
        )
    if layout != "auto":
        return layout
    if (root / "images").is_dir():
        return "plain"
    if (root / "images_4").is_dir():
        return "spinnerf"
    raise UserError(
        f"{root}: no images/ (plain layout) or images_4/ (SPIn-NeRF layout) folder; "
        "put the training photos in images/ and their masks in masks/"
    )


def _match_masks(images: list[Path], mask_dir: Path, required: bool) -> list[FolderView]:
    masks = {p.stem: p for p in list_images(mask_dir)} if mask_dir.is_dir() else {}
    names = {p.stem for p in images}
    orphans = sorted(set(masks) - names)
    if orphans:
        raise UserError(
            f"{mask_dir}: mask(s) {', '.join(orphans[:5])} match no image in "
            f"{images[0].parent if images else mask_dir}; masks must have the same base name as their image"
        )
    if required:
        if not mask_dir.is_dir():
            raise UserError(f"{mask_dir}: mask folder not found; give one mask per training image")
        missing = [p.name for p in images if p.stem not in masks]
        if missing:
            raise UserError(
                f"{mask_dir}: no mask for training image(s) {', '.join(missing[:5])}; "
                "add a mask with the same base name"
            )
    return [FolderView(p.stem, p, masks.get(p.stem)) for p in images]


def read_plain(root: Path, min_train_views: int) -> FolderScene:
    images = list_images(root / "images")
    _check_count(root / "images", images, min_train_views)
    train = _match_masks(images, root / "masks", required=True)
    test_dir = root / "test"
    test_images = list_images(test_dir) if test_dir.is_dir() else []
    test = _match_masks(test_images, root / "test_masks", required=False) if test_images else []
    clash = sorted({v.name for v in train} & {v.name for v in test})
    if clash:
        raise UserError(
            f"{test_dir}: test view name(s) {', '.join(clash[:5])} also used by training views; rename them"
        )
    return FolderScene("plain", train, test)


def read_spinnerf(root: Path, n_test: int, min_train_views: int) -> FolderScene:
    image_dir = root / "images_4"
    images = list_images(image_dir)
    if len(images) <= n_test:
        raise UserError(
            f"{image_dir}: {len(images)} images, but the first {n_test} are test views "
            "(setting spinnerf_test_views); lower it or add views"
        )
    _check_count(image_dir, images[n_test:], min_train_views)
    views = _match_masks(images, image_dir / "label", required=True)
    return FolderScene("spinnerf", views[n_test:], views[:n_test])


def _check_count(folder: Path, images: list[Path], minimum: int) -> None:
    if len(images) < minimum:
        raise UserError(
            f"{folder}: {len(images)} training image(s), at least {minimum} needed; "
            "capture more views of the scene"
        )
