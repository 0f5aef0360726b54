"""Builders of small scene folders for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def write_plain_scene(
    root: Path, n_train: int = 4, n_test: int = 2, size=(64, 48), seed: int = 0
) -> Path:
    """A plain-layout folder: images/, masks/, test/ with random textures and a centred mask."""
    rng = np.random.default_rng(seed)
    width, height = size
    for folder in ("images", "masks", "test"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : height // 2, width // 4 : width // 2] = 255
    for i in range(n_train):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            root / "images" / f"v{i:02d}.png"
        )
        Image.fromarray(mask).save(root / "masks" / f"v{i:02d}.png")
    for i in range(n_test):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            root / "test" / f"t{i:02d}.png"
        )
    return root
