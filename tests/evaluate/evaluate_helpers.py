"""Builders for the evaluate and table tests: small prepared scenes, masks and renders on disk.

The tiny networks here have random weights. Metrics computed with them test the plumbing of
the LPIPS and FID/KID code paths only; their values mean nothing.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class SceneFiles:
    scene: Path
    masks: Path
    render: Path
    nerf: Path
    names: list[str]


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_scene(
    root: Path,
    name: str = "toy",
    n_views: int = 3,
    size: tuple[int, int] = (64, 48),
    offset: int = 25,
    masks: bool = True,
    seed: int = 0,
    train_seconds: float | None = 12.5,
    idu_seconds: float | None = 2.5,
) -> SceneFiles:
    """A prepared scene with test views, their dilated masks and renders = ground truth + offset.

    Ground-truth values lie in [40, 200], the render adds ``offset`` (8-bit levels) inside the
    mask and nothing outside, so ``psnr_masked = 20·log10(255 / offset)`` exactly. The NeRF
    folder's ``nerf.json`` says training took ``train_seconds`` of which ``idu_seconds`` were
    dataset updates (``None``: IDU off) and 0.5 s neither; no ``nerf.json`` when
    ``train_seconds`` is ``None``.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    scene, mask_dir, render_dir, nerf = (
        root / "scene",
        root / "masks",
        root / "render",
        root / "nerf",
    )
    test, names = [], []
    mask = np.zeros((height, width), bool)
    mask[height // 4 : height // 2, width // 3 : width // 2] = True
    for i in range(n_views):
        view = f"t{i:02d}"
        names.append(view)
        truth = rng.integers(40, 201, (height, width, 3), dtype=np.uint8)
        write_png(scene / "test" / f"{view}.png", truth)
        render = truth.copy()
        render[mask] += np.uint8(offset)
        write_png(render_dir / "test" / f"{view}.png", render)
        if masks:
            write_png(mask_dir / "test" / f"{view}.png", np.where(mask, 255, 0).astype(np.uint8))
        test.append({"name": view, "image": f"test/{view}.png", "mask": None})
    manifest = {
        "name": name,
        "source": "test",
        "width": width,
        "height": height,
        "train": [],
        "test": test,
        "known_poses": None,
        "background": None,
        "object_box": None,
    }
    scene.mkdir(parents=True, exist_ok=True)
    (scene / "scene.json").write_text(json.dumps(manifest))
    mask_dir.mkdir(parents=True, exist_ok=True)
    (mask_dir / "masks.json").write_text(
        json.dumps({"dilation": 0, "source": "files", "test_masks": masks, "coverage": {}})
    )
    nerf.mkdir(parents=True, exist_ok=True)
    if train_seconds is not None:
        timings = {"seconds": train_seconds, "nerf_seconds": train_seconds - 0.5}
        if idu_seconds is not None:
            timings.update(nerf_seconds=train_seconds - 0.5 - idu_seconds, idu_seconds=idu_seconds)
        info = {"timings": timings, "idu": {"enabled": idu_seconds is not None}}
        (nerf / "nerf.json").write_text(json.dumps(info))
    return SceneFiles(scene, mask_dir, render_dir, nerf, names)


@functools.cache
def tiny_lpips():
    """PLUMBING ONLY: LPIPS-AlexNet with random trunk and random linear layers (no file read)."""
    import warnings

    import lpips
    import torch

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False).eval()

    def distance(a, b):
        with torch.no_grad():
            return model(a, b, normalize=True).reshape(-1)

    return distance


class TinyInception:
    """PLUMBING ONLY: a random conv net standing in for Inception (16-d features)."""

    def __init__(self):
        import torch

        torch.manual_seed(0)
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 5, stride=4),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        ).eval()
        self.calls = []

    def __call__(self, x):
        import torch

        self.calls.append(tuple(x.shape))
        with torch.no_grad():
            return self.layers((x - 128.0) / 128.0)


def tiny_backbones():
    """Backbones with random tiny networks (plumbing tests; the values mean nothing)."""
    from maldnerf.evaluate.backbones import Backbones

    return Backbones(
        lpips=tiny_lpips(),
        inception=TinyInception(),
        provenance={
            "lpips": {"path": "TEST: random weights (plumbing only)", "sha256": ""},
            "inception": {"path": "TEST: random weights (plumbing only)", "sha256": "tiny"},
        },
    )
