"""Builders for the diffusion tests: a small scene on disk and quick customisation settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class SmallScene:
    """A scene in the poses/masks stages' formats: textured views with a red box on them."""

    transforms: Path
    masks_dir: Path
    names: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray]
    backgrounds: list[np.ndarray]


def texture(height: int, width: int, shift: int) -> np.ndarray:
    """A smooth, colourful, deterministic background."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x = x + shift
    image = np.stack(
        [
            0.5 + 0.3 * np.sin(x / 7.0) * np.cos(y / 11.0),
            0.5 + 0.3 * np.cos((x + y) / 9.0),
            0.4 + 0.2 * np.sin(y / 5.0),
        ],
        axis=-1,
    )
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def write_small_scene(root: Path, views: int = 4, size: tuple[int, int] = (96, 72)) -> SmallScene:
    from maldnerf import atomic
    from maldnerf.cameras import Cameras, Frame, write_transforms
    from maldnerf.images import read_image, write_image, write_mask

    width, height = size
    frames, names, images, masks, backgrounds = [], [], [], [], []
    for i in range(views):
        name = f"view_{i:02d}"
        background = texture(height, width, 4 * i)
        mask = np.zeros((height, width), bool)
        mask[20 : 48 + i, 30 + 2 * i : 58 + 2 * i] = True
        image = background.copy()
        image[mask] = np.array([0.9, 0.15, 0.1], np.float32)
        write_image(root / "images" / f"{name}.png", image)
        write_mask(root / "masks" / "train" / f"{name}.png", mask)
        frames.append(
            Frame(name, "train", root / "images" / f"{name}.png", None, np.eye(4), 0.1, 10.0)
        )
        names.append(name)
        images.append(read_image(root / "images" / f"{name}.png"))
        masks.append(mask)
        backgrounds.append(background)
    atomic.write_json(
        root / "masks" / "masks.json",
        {"dilation": 0, "source": "files", "test_masks": False, "coverage": {}},
    )
    cameras = Cameras(width, height, 80.0, 80.0, width / 2, height / 2, frames)
    write_transforms(root / "poses" / "transforms.json", cameras)
    return SmallScene(
        root / "poses" / "transforms.json", root / "masks", names, images, masks, backgrounds
    )


def quick_customize(**changes):
    from maldnerf.diffusion.customize import CustomizeSettings

    values = dict(steps=4, batch_size=2, checkpoint_every=2, warmup_steps=1, seed=3)
    values.update(changes)
    return CustomizeSettings(**values)


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB of images in [0, 1] over the pixels where ``mask`` is true."""
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return float(10.0 * np.log10(1.0 / max(mse, 1e-12)))


def readme_snippet(folder: Path) -> str:
    """The Python code block of a customisation folder's README.md."""
    blocks = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.DOTALL)
    assert len(blocks) == 1, blocks
    return blocks[0]


def run_readme_snippet(
    folder: Path, work: Path, image: np.ndarray, mask: np.ndarray
) -> dict[str, Any]:
    """Execute the README snippet as written, with its placeholders replaced by paths.

    ``image`` (float RGB) and ``mask`` (bool) are written as PNGs in ``work``; returns the
    snippet's variables (``pipe``, ``result``, ...).
    """
    from maldnerf.images import write_image, write_mask

    work.mkdir(parents=True, exist_ok=True)
    write_image(work / "image.png", image)
    write_mask(work / "mask.png", mask)
    code = (
        readme_snippet(folder)
        .replace("<this folder>", str(folder))
        .replace("<image.png>", str(work / "image.png"))
        .replace("<mask.png>", str(work / "mask.png"))
    )
    assert "<" not in code.replace("<scene-", ""), code  # no placeholder left
    namespace: dict[str, Any] = {"__name__": "readme_snippet"}
    exec(compile(code, str(folder / "README.md"), "exec"), namespace)
    return namespace


def window_resampled(array: np.ndarray, window, resolution: int, outside: float) -> np.ndarray:
    """The square ``window`` (``x0, y0, size``) of ``array`` at model resolution by area
    averaging, every pixel outside the image set to ``outside`` first: with NaN, exactly the model
    pixels whose footprint leaves the image are NaN. Written independently of ``windows.cut``."""
    import cv2

    height, width = array.shape[:2]
    crop = np.full((window.size, window.size, *array.shape[2:]), outside, np.float32)
    ys = np.arange(window.y0, window.y0 + window.size)
    xs = np.arange(window.x0, window.x0 + window.size)
    rows, cols = (ys >= 0) & (ys < height), (xs >= 0) & (xs < width)
    crop[np.ix_(rows, cols)] = array[np.ix_(ys[rows], xs[cols])]
    return cv2.resize(crop, (resolution, resolution), interpolation=cv2.INTER_AREA)
