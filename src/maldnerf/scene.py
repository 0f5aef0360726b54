"""The prepared scene: the artifact the ``prepare`` stage writes and every later stage reads.

Layout of ``results/{scene}/scene/``::

    scene.json          manifest (below)
    images/<name>.png   training views with the object, 8-bit RGB
    masks/<name>.png    object masks of the training views, 0/255 (255 = object), not dilated
    test/<name>.png     test views: ground truth without the object, 8-bit RGB
    test_masks/<name>.png   where the object would be in each test view (when known)
    known_poses.json    cameras in the poses stage's transforms format (when known)
    background/<name>.png   synthetic scenes only: each training view without the object

``scene.json`` holds ``name``, ``source``, ``width``, ``height`` (pixels, after downscaling),
``train`` and ``test`` (lists of ``{"name", "image", "mask"}`` with paths relative to the scene
folder; a test view's ``mask`` may be ``null``), ``known_poses`` (relative path or ``null``) and
``background`` (folder of the true backgrounds of the training views, or ``null``) and
``object_box`` (the object's oriented box in the known-pose world frame, or ``null``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError

MANIFEST = "scene.json"


@dataclass
class View:
    """One view of a scene: its name and the paths of its image and (optional) object mask."""

    name: str
    image: Path
    mask: Path | None


@dataclass
class Scene:
    """A prepared scene read back from its folder (paths are absolute)."""

    root: Path
    name: str
    source: str
    width: int
    height: int
    train: list[View]
    test: list[View]
    known_poses: Path | None = None
    background: Path | None = None
    object_box: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def views(self) -> list[View]:
        """Training views followed by test views."""
        return self.train + self.test


def load_scene(root: str | Path) -> Scene:
    """Read the manifest of a prepared scene folder."""
    root = Path(root)
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{manifest}: not found; run the prepare stage for this scene first")
    data = json.loads(manifest.read_text())

    def views(items: list[dict[str, Any]]) -> list[View]:
        return [
            View(
                item["name"],
                root / item["image"],
                root / item["mask"] if item.get("mask") else None,
            )
            for item in items
        ]

    known = data.get("known_poses")
    return Scene(
        root=root,
        name=data["name"],
        source=data["source"],
        width=int(data["width"]),
        height=int(data["height"]),
        train=views(data["train"]),
        test=views(data["test"]),
        known_poses=root / known if known else None,
        background=root / data["background"] if data.get("background") else None,
        object_box=data.get("object_box"),
        extra=data.get("extra", {}),
    )
