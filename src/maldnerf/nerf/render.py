"""The ``render`` stage: render the trained NeRF at the test (and optionally training) cameras.

Inputs: the poses stage's ``transforms.json`` (cameras) and a train-stage folder
(``model.safetensors`` + ``nerf.json``; nothing from the resume folder). Output folder
``results/{scene}/render/{variant}/`` (atomic)::

    test/<name>.png       one 8-bit RGB render per test frame (what evaluation scores)
    train/<name>.png      renders of the training frames (when ``splits`` includes train)
    depth/<name>.png      depth colour-mapped (turbo, near = red … far = blue, on inverse depth)
    depth/<name>.npy      raw depth, float32 (H, W), world units of transforms.json, measured
                          along each camera's optical axis
    flythrough.gif        a path through the training cameras (when ``gif`` is on)
    render.json           seconds, rays/s, views per split, image size, depth format
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import atomic
from ..cameras import Cameras, load_transforms
from ..devices import resolve_device
from ..errors import UserError
from ..images import write_image
from ..settings import to_dict
from .model import NerfModel, load_model, render_rays
from .parameterization import SceneNormalization
from .rays import image_rays
from .runtime import resolve_precision
from .settings import RenderSettings

log = logging.getLogger(__name__)


def render_view(
    model: NerfModel,
    normalization: SceneNormalization,
    camera_to_world: np.ndarray,
    intrinsics: tuple[float, float, float, float],
    width: int,
    height: int,
    chunk: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Colour ``(H, W, 3)`` in [0, 1] and depth ``(H, W)`` (world units) of one camera."""
    device = model.background.device
    matrix = torch.tensor(
        normalization.camera_to_model(camera_to_world), dtype=torch.float32, device=device
    )
    out = render_rays(model, image_rays(matrix, intrinsics, width, height), chunk)
    rgb = out["rgb"].clamp(0.0, 1.0).reshape(height, width, 3).float().cpu().numpy()
    depth = out["depth"].reshape(height, width).float().cpu().numpy()
    return rgb, depth


def colorize_depth(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """Turbo colour map of inverse depth between ``near`` and ``far`` (float RGB)."""
    from matplotlib import colormaps

    inverse = 1.0 / np.clip(depth, near, far)
    value = (inverse - 1.0 / far) / (1.0 / near - 1.0 / far)
    return colormaps["turbo"](np.clip(value, 0.0, 1.0))[..., :3].astype(np.float32)


def flythrough_poses(camera_to_world: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` camera-to-world matrices along the training cameras (file order): positions
    interpolated linearly, orientations by spherical linear interpolation."""
    from scipy.spatial.transform import Rotation, Slerp

    count = len(camera_to_world)
    keys = np.arange(count)
    slerp = Slerp(keys, Rotation.from_matrix(camera_to_world[:, :3, :3]))
    times = np.linspace(0, count - 1, frames)
    poses = np.tile(np.eye(4), (frames, 1, 1))
    poses[:, :3, :3] = slerp(times).as_matrix()
    for axis in range(3):
        poses[:, axis, 3] = np.interp(times, keys, camera_to_world[:, axis, 3])
    return poses


def _check_cameras(cameras: Cameras, info: dict[str, Any], transforms: Path) -> None:
    size = (info["cameras"]["width"], info["cameras"]["height"])
    if (cameras.width, cameras.height) != size:
        log.warning(
            "%s: images are %dx%d, the NeRF was trained on %dx%d; rendering at the new size",
            transforms,
            cameras.width,
            cameras.height,
            *size,
        )


def run(settings: RenderSettings, transforms: Path, nerf_dir: Path, output: Path) -> None:
    """Render the views of ``transforms`` with the NeRF in ``nerf_dir`` into ``output``."""
    transforms, nerf_dir, output = Path(transforms), Path(nerf_dir), Path(output)
    device = resolve_device(settings.device, "render.device")
    cameras = load_transforms(transforms)
    model, info = load_model(nerf_dir, device)
    model.autocast_dtype = resolve_precision(settings.precision, device)
    normalization: SceneNormalization = info["normalization"]
    _check_cameras(cameras, info, transforms)
    near, far = info["cameras"]["near"], info["cameras"]["far"]
    intrinsics = (cameras.fx, cameras.fy, cameras.cx, cameras.cy)
    views: dict[str, list[str]] = {}
    rays = 0
    started = time.perf_counter()
    with atomic.output_dir(output) as tmp:
        for split in dict.fromkeys(settings.splits):
            frames = cameras.split(split)
            if split == "test" and not frames:
                raise UserError(f"{transforms}: no test frames to render; rerun the poses stage")
            views[split] = []
            for frame in frames:
                rgb, depth = render_view(
                    model,
                    normalization,
                    frame.camera_to_world,
                    intrinsics,
                    cameras.width,
                    cameras.height,
                    settings.chunk_rays,
                )
                write_image(tmp / split / f"{frame.name}.png", rgb)
                if settings.depth:
                    write_image(
                        tmp / "depth" / f"{frame.name}.png", colorize_depth(depth, near, far)
                    )
                    atomic.atomic_write(
                        tmp / "depth" / f"{frame.name}.npy",
                        lambda p, d=depth: np.save(p, d.astype(np.float32)),
                    )
                views[split].append(frame.name)
                rays += cameras.width * cameras.height
        seconds = time.perf_counter() - started
        if settings.gif:
            write_flythrough(settings, model, normalization, cameras, tmp / "flythrough.gif")
        atomic.write_json(
            tmp / "render.json",
            {
                "settings": to_dict(settings),
                "device": str(device),
                "seconds": seconds,
                "rays_per_second": rays / max(seconds, 1e-9),
                "views": views,
                "width": cameras.width,
                "height": cameras.height,
                "depth_format": "float32 .npy (H, W), world units of transforms.json, "
                "depth along the optical axis; PNG: turbo colour map of inverse depth",
            },
        )
    log.info(
        "rendered %d views in %.1f s (%.0f rays/s) to %s",
        sum(len(v) for v in views.values()),
        seconds,
        rays / max(seconds, 1e-9),
        output,
    )


def write_flythrough(
    settings: RenderSettings,
    model: NerfModel,
    normalization: SceneNormalization,
    cameras: Cameras,
    path: Path,
) -> None:
    """A GIF along the training cameras at ``gif_scale`` of the image size."""
    from PIL import Image

    from ..images import to_uint8

    train = cameras.split("train") or cameras.frames
    poses = flythrough_poses(np.stack([f.camera_to_world for f in train]), settings.gif_frames)
    scale = settings.gif_scale
    width, height = max(8, round(cameras.width * scale)), max(8, round(cameras.height * scale))
    intrinsics = (
        cameras.fx * width / cameras.width,
        cameras.fy * height / cameras.height,
        cameras.cx * width / cameras.width,
        cameras.cy * height / cameras.height,
    )
    frames = [
        Image.fromarray(
            to_uint8(
                render_view(
                    model, normalization, pose, intrinsics, width, height, settings.chunk_rays
                )[0]
            )
        )
        for pose in poses
    ]

    def save(tmp: Path) -> None:
        frames[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=round(1000 / settings.gif_fps),
            loop=0,
        )

    atomic.atomic_write(path, save)
