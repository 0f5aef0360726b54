"""A procedural forward-facing test scene: a textured room corner with one object to remove.

The scene is ray-traced analytically (planes, oriented boxes, spheres) with solid 3D
value-noise textures, so it is generated deterministically from a seed and needs no data files.
World units are arbitrary metres; +y is up. Cameras use the OpenGL convention (x right, y up,
looking along -z) and are stored as 4×4 camera-to-world matrices.

Training views show the object; test views are rendered from other positions with the object
removed (ground truth), together with the mask of where the object would have been. Each
training view also comes without the object (its true background), for oracle experiments
and for scoring 2D inpainting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..settings import require
from .raytrace import Box, Material, Plane, RayTracedScene, Sphere, ValueNoise


@dataclass
class SyntheticSettings:
    """How the synthetic scene is generated."""

    seed: int = 0
    """Seed for textures and small camera jitter; the same seed gives identical images."""
    width: int = 160
    """Image width in pixels."""
    height: int = 120
    """Image height in pixels."""
    n_train: int = 24
    """Number of training views (with the object and its mask)."""
    n_test: int = 8
    """Number of test views (ground truth without the object)."""
    fov_degrees: float = 60.0
    """Horizontal field of view of the pinhole camera, in degrees."""
    supersampling: int = 2
    """Rays per pixel along each axis (anti-aliasing); masks are exact at pixel level."""

    def __post_init__(self) -> None:
        require(self.width >= 32 and self.height >= 32, "width and height must be >= 32 pixels")
        require(self.n_train >= 3, "n_train must be >= 3")
        require(self.n_test >= 1, "n_test must be >= 1")
        require(10.0 <= self.fov_degrees <= 120.0, "fov_degrees must be in [10, 120]")
        require(1 <= self.supersampling <= 4, "supersampling must be in [1, 4]")


@dataclass
class SyntheticView:
    """One rendered view: RGB image, object mask, and camera."""

    image: np.ndarray  # (H, W, 3) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool, True where the object is (or would be, for test views)
    camera_to_world: np.ndarray  # (4, 4) float64, OpenGL convention
    depth_range: tuple[float, float]  # (near, far) along the optical axis, world units
    background: np.ndarray | None = None  # training views: the same view without the object


class SyntheticScene(RayTracedScene):
    """The room-corner scene; ``render`` ray-traces it from any pinhole camera."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        noise = ValueNoise(rng)
        materials = [self._object_material(rng)] + [
            self.random_material(rng, pattern)
            for pattern in ("tiles", "noise", "stripes", "noise", "noise", "stripes", "noise")
        ]
        planes = [
            Plane(np.array([0.0, 1.0, 0.0]), -1.0, 1),  # floor y = -1
            Plane(np.array([0.0, 0.0, 1.0]), -4.5, 2),  # back wall z = -4.5
            Plane(np.array([1.0, 0.0, 0.0]), -3.2, 3),  # left wall x = -3.2
            Plane(np.array([-1.0, 0.0, 0.0]), -3.2, 4),  # right wall x = 3.2
            Plane(np.array([0.0, -1.0, 0.0]), -2.6, 2),  # ceiling y = 2.6
        ]
        boxes = [
            Box(np.array([-2.0, -0.35, -3.5]), np.array([0.55, 0.65, 0.45]), 0.35, 5),
            Box(np.array([1.7, -0.6, -3.0]), np.array([0.6, 0.4, 0.5]), -0.5, 6),
            Box(np.array([-0.6, -0.8, -3.9]), np.array([0.9, 0.2, 0.3]), 0.1, 7),
        ]
        spheres = [Sphere(np.array([0.55, -0.5, -3.3]), 0.5, 3)]
        # The object to remove: a box standing on the floor in front of the furniture.
        object_box = Box(np.array([0.05, -0.55, -1.7]), np.array([0.32, 0.45, 0.32]), 0.6, 0)
        light = np.array([-0.4, 0.8, 0.45]) / np.linalg.norm([-0.4, 0.8, 0.45])
        super().__init__(noise, materials, planes, boxes, spheres, object_box, light)

    @staticmethod
    def _object_material(rng: np.random.Generator) -> Material:
        palette = np.array([[0.85, 0.12, 0.1], [0.95, 0.8, 0.2], [0.15, 0.1, 0.6]])
        return Material(palette, 3.0, 3, "stripes", rng.uniform(0, 100, 3))


def look_at(position: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Camera-to-world matrix (OpenGL convention) of a camera at ``position`` facing ``target``."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up))
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, -forward, position
    return c2w


def camera_path(n_views: int, seed: int) -> list[np.ndarray]:
    """Forward-facing camera poses on a two-turn spiral in front of the scene, with jitter."""
    rng = np.random.default_rng(seed + 1)
    target = np.array([0.0, -0.45, -2.6])
    centre = np.array([0.0, 0.15, 1.3])
    poses = []
    for i in range(n_views):
        angle = 4.0 * np.pi * i / n_views
        radius = 0.5 + 0.4 * (i / max(n_views - 1, 1))
        offset = np.array(
            [
                1.1 * radius * np.cos(angle),
                0.45 * radius * np.sin(angle),
                0.35 * np.sin(0.5 * angle),
            ]
        )
        offset += rng.normal(scale=0.02, size=3)
        poses.append(look_at(centre + offset, target))
    return poses


def intrinsics_matrix(width: int, height: int, fov_degrees: float) -> np.ndarray:
    """3×3 pinhole intrinsics with square pixels and the principal point at the centre."""
    focal = 0.5 * width / np.tan(np.deg2rad(fov_degrees) / 2.0)
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def generate(
    settings: SyntheticSettings,
) -> tuple[list[SyntheticView], list[SyntheticView], np.ndarray, SyntheticScene]:
    """Render the training views (with object) and test views (without) of the scene.

    Returns ``(train_views, test_views, intrinsics, scene)``. Views alternate along one camera
    path so test views lie between training views.
    """
    scene = SyntheticScene(settings.seed)
    intrinsics = intrinsics_matrix(settings.width, settings.height, settings.fov_degrees)
    total = settings.n_train + settings.n_test
    poses = camera_path(total, settings.seed)
    test_indices = set(np.round(np.linspace(0, total - 1, settings.n_test + 2)[1:-1]).astype(int))
    while len(test_indices) < settings.n_test:  # only for very small n_train
        test_indices.add(next(i for i in range(total) if i not in test_indices))
    train, test = [], []
    for index, c2w in enumerate(poses):
        is_test = index in test_indices
        image, mask, depth_range = scene.render(
            c2w,
            intrinsics,
            settings.width,
            settings.height,
            include_object=not is_test,
            supersampling=settings.supersampling,
        )
        background = None
        if not is_test:
            background, _, _ = scene.render(
                c2w,
                intrinsics,
                settings.width,
                settings.height,
                include_object=False,
                supersampling=settings.supersampling,
            )
        (test if is_test else train).append(
            SyntheticView(image, mask, c2w, depth_range, background)
        )
    return train, test, intrinsics, scene
