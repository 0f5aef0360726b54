"""Random rooms for pretraining the tiny diffusion model: many scenes unlike the evaluation scene.

The evaluation scene of :mod:`.synthetic` is one hand-placed room corner (its seed changes only
textures and camera jitter). The generator here draws everything from a random stream: room
size, the number, size, place and turn of the furniture boxes and spheres, the object's shape,
size, place and texture, every material's pattern and palette, the light, and a forward-facing
camera path aimed near the object. Its layouts therefore never coincide with the evaluation
scene's, whatever the seeds.

Views are rendered with the ray tracer of :mod:`.raytrace`, with and without
the object, with the object's mask (OpenGL cameras, images float32 in [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .raytrace import Box, Plane, RayTracedScene, Sphere, ValueNoise
from .synthetic import intrinsics_matrix, look_at

PATTERNS = ("noise", "tiles", "stripes")


@dataclass
class RoomViews:
    """The rendered views of one random room (``N`` views of ``H × W`` pixels)."""

    images: np.ndarray  # (N, H, W, 3) uint8, the object in view
    backgrounds: np.ndarray  # (N, H, W, 3) uint8, the same views without the object
    masks: np.ndarray  # (N, H, W) bool, where the object is


def random_room(rng: np.random.Generator) -> RayTracedScene:
    """A random room with furniture and one object standing on the floor in front of it."""
    noise = ValueNoise(rng)
    object_material = RayTracedScene.random_material(rng, str(rng.choice(PATTERNS)))
    object_material.frequency = float(rng.uniform(2.0, 4.0))
    materials = [object_material] + [
        RayTracedScene.random_material(rng, str(rng.choice(PATTERNS))) for _ in range(7)
    ]
    floor = -float(rng.uniform(0.8, 1.2))
    back = -float(rng.uniform(3.8, 6.0))
    side = float(rng.uniform(2.4, 4.0))
    planes = [
        Plane(np.array([0.0, 1.0, 0.0]), floor, 1),
        Plane(np.array([0.0, 0.0, 1.0]), back, 2),
        Plane(np.array([1.0, 0.0, 0.0]), -side, 3),
        Plane(np.array([-1.0, 0.0, 0.0]), -side, int(rng.integers(2, 5))),
        Plane(np.array([0.0, -1.0, 0.0]), -float(rng.uniform(2.0, 3.0)), 2),
    ]
    boxes = []
    for _ in range(int(rng.integers(2, 6))):
        half = rng.uniform([0.15, 0.1, 0.15], [0.9, 0.8, 0.6])
        center = np.array(
            [rng.uniform(-side + 0.4, side - 0.4), floor + half[1], rng.uniform(back + 0.5, -2.6)]
        )
        boxes.append(Box(center, half, float(rng.uniform(-1.0, 1.0)), int(rng.integers(3, 8))))
    spheres = []
    for _ in range(int(rng.integers(0, 3))):
        radius = float(rng.uniform(0.2, 0.6))
        center = np.array(
            [rng.uniform(-side + 0.5, side - 0.5), floor + radius, rng.uniform(back + 0.6, -2.6)]
        )
        spheres.append(Sphere(center, radius, int(rng.integers(3, 8))))
    half = rng.uniform([0.18, 0.25, 0.18], [0.45, 0.55, 0.45])
    object_center = np.array(
        [rng.uniform(-0.7, 0.7), floor + half[1], rng.uniform(-2.3, -1.3)], dtype=float
    )
    object_box = Box(object_center, half, float(rng.uniform(-np.pi, np.pi)), 0)
    light = np.array([rng.uniform(-0.8, 0.8), rng.uniform(0.5, 1.0), rng.uniform(-0.2, 0.8)])
    light /= np.linalg.norm(light)
    return RayTracedScene(noise, materials, planes, boxes, spheres, object_box, light)


def random_cameras(rng: np.random.Generator, scene: RayTracedScene, count: int) -> list[np.ndarray]:
    """``count`` forward-facing camera-to-world matrices (OpenGL) on a random spiral, aimed at
    points around the object."""
    target = scene.object_box.center + rng.normal(scale=[0.3, 0.15, 0.3])
    centre = np.array([rng.uniform(-0.4, 0.4), rng.uniform(0.0, 0.5), rng.uniform(0.8, 1.8)])
    reach = rng.uniform(0.4, 1.0)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    poses = []
    for i in range(count):
        angle = phase + 4.0 * np.pi * i / max(count, 1)
        offset = reach * np.array([1.1 * np.cos(angle), 0.45 * np.sin(angle), 0.3 * np.sin(angle)])
        aim = target + rng.normal(scale=0.15, size=3)
        poses.append(look_at(centre + offset + rng.normal(scale=0.05, size=3), aim))
    return poses


def render_room(
    seed: tuple[int, ...], views: int, width: int, height: int, fov_degrees: float = 60.0
) -> RoomViews:
    """Render ``views`` views of the random room drawn from the random stream ``seed``."""
    rng = np.random.default_rng(list(seed))
    scene = random_room(rng)
    intrinsics = intrinsics_matrix(width, height, fov_degrees)
    images, backgrounds, masks = [], [], []
    for pose in random_cameras(rng, scene, views):
        image, background, mask = scene.render_pair(pose, intrinsics, width, height)
        images.append(image)
        backgrounds.append(background)
        masks.append(mask)

    def to_uint8(stack: list[np.ndarray]) -> np.ndarray:
        return np.round(np.stack(stack) * 255.0).astype(np.uint8)

    return RoomViews(to_uint8(images), to_uint8(backgrounds), np.stack(masks))
