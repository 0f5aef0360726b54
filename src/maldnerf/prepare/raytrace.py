"""A small analytic ray tracer: planes, oriented boxes and spheres with solid value-noise textures.

:class:`RayTracedScene` holds a layout (surfaces with material ids, one object to remove, a
light) and renders it from any pinhole camera, deterministically. The evaluation room of
:mod:`.synthetic` and the random pretraining rooms of :mod:`.procedural` are layouts of it.
World units are arbitrary metres; +y is up. Cameras use the OpenGL convention (x right, y up,
looking along -z) and are 4×4 camera-to-world matrices; intrinsics are 3×3 pixel matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Material:
    """A solid texture: three palette colours mixed by multi-octave value noise."""

    palette: np.ndarray  # (3, 3) RGB in [0, 1]
    frequency: float  # base noise frequency, cycles per world unit
    octaves: int
    pattern: str  # "noise", "tiles" or "stripes"
    offset: np.ndarray  # (3,) texture-space offset so materials differ


@dataclass
class Box:
    """An oriented box: centre, half sizes and a rotation about +y (radians)."""

    center: np.ndarray
    half: np.ndarray
    yaw: float
    material: int


@dataclass
class Sphere:
    center: np.ndarray
    radius: float
    material: int


@dataclass
class Plane:
    """The plane ``dot(normal, p) = distance``, visible from the side the normal points to."""

    normal: np.ndarray
    distance: float
    material: int


class ValueNoise:
    """Smooth 3D value noise in [0, 1] from a seeded lattice (tileable every 256 cells)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.perm = rng.permutation(256).astype(np.int64)
        self.values = rng.random(256)

    def _lattice(self, ix: np.ndarray, iy: np.ndarray, iz: np.ndarray) -> np.ndarray:
        p = self.perm
        return self.values[p[(p[(p[ix & 255] + iy) & 255] + iz) & 255]]

    def __call__(self, points: np.ndarray) -> np.ndarray:
        base = np.floor(points).astype(np.int64)
        frac = points - base
        smooth = frac * frac * (3.0 - 2.0 * frac)
        result = np.zeros(points.shape[:-1])
        for dx in (0, 1):
            wx = smooth[..., 0] if dx else 1.0 - smooth[..., 0]
            for dy in (0, 1):
                wy = smooth[..., 1] if dy else 1.0 - smooth[..., 1]
                for dz in (0, 1):
                    wz = smooth[..., 2] if dz else 1.0 - smooth[..., 2]
                    corner = self._lattice(base[..., 0] + dx, base[..., 1] + dy, base[..., 2] + dz)
                    result += wx * wy * wz * corner
        return result

    def fractal(self, points: np.ndarray, octaves: int) -> np.ndarray:
        """Sum of ``octaves`` noise layers, each twice the frequency and half the amplitude."""
        total = np.zeros(points.shape[:-1])
        amplitude, norm = 1.0, 0.0
        for octave in range(octaves):
            total += amplitude * self(points * (2.0**octave) + 17.0 * octave)
            norm += amplitude
            amplitude *= 0.5
        return total / norm


@dataclass
class RayTracedScene:
    """A layout: material 0 is the object's, ``object_box`` the object to remove."""

    noise: ValueNoise
    materials: list[Material]
    planes: list[Plane]
    boxes: list[Box]
    spheres: list[Sphere]
    object_box: Box
    light_direction: np.ndarray  # (3,) unit vector towards the light

    OBJECT_MATERIAL = 0

    @staticmethod
    def random_material(rng: np.random.Generator, pattern: str) -> Material:
        """Three random palette colours (the second contrasting the first) mixed by noise."""
        palette = rng.uniform(0.05, 0.95, size=(3, 3))
        palette[1] = 1.0 - palette[0] * 0.8  # a contrasting second colour
        return Material(palette, float(rng.uniform(1.5, 3.0)), 5, pattern, rng.uniform(0, 100, 3))

    # ------------------------------------------------------------------ intersection
    def _intersect_plane(self, plane: Plane, origins: np.ndarray, dirs: np.ndarray):
        denom = dirs @ plane.normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (plane.distance - origins @ plane.normal) / denom
        t = np.where((denom < -1e-9) & (t > 1e-6), t, np.inf)
        normals = np.broadcast_to(plane.normal, origins.shape)
        return t, normals

    @staticmethod
    def _rotation(yaw: float) -> np.ndarray:
        c, s = np.cos(yaw), np.sin(yaw)
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])

    def _intersect_box(self, box: Box, origins: np.ndarray, dirs: np.ndarray):
        rot = self._rotation(box.yaw)  # box-to-world
        local_o = (origins - box.center) @ rot
        local_d = dirs @ rot
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / local_d
            t0 = (-box.half - local_o) * inv
            t1 = (box.half - local_o) * inv
        t_near = np.minimum(t0, t1)
        t_far = np.maximum(t0, t1)
        t_enter = np.nanmax(t_near, axis=-1)
        t_exit = np.nanmin(t_far, axis=-1)
        hit = (t_enter <= t_exit) & (t_enter > 1e-6)
        t = np.where(hit, t_enter, np.inf)
        axis = np.argmax(np.nan_to_num(t_near, nan=-np.inf), axis=-1)
        local_n = np.zeros_like(local_o)
        rows = np.arange(len(axis))
        local_n[rows, axis] = -np.sign(local_d[rows, axis])
        return t, local_n @ rot.T

    @staticmethod
    def _intersect_sphere(sphere: Sphere, origins: np.ndarray, dirs: np.ndarray):
        oc = origins - sphere.center
        b = np.sum(oc * dirs, axis=-1)
        c = np.sum(oc * oc, axis=-1) - sphere.radius**2
        disc = b * b - c
        root = np.sqrt(np.maximum(disc, 0.0))
        t = -b - root
        t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
        points = origins + t[:, None] * dirs
        normals = (points - sphere.center) / sphere.radius
        return t, normals

    def trace(self, origins: np.ndarray, dirs: np.ndarray, include_object: bool):
        """Nearest hit of each ray: distance, surface normal and material id (-1: none)."""
        n = len(origins)
        best_t = np.full(n, np.inf)
        best_n = np.zeros((n, 3))
        best_m = np.full(n, -1, dtype=np.int64)
        candidates = [(self._intersect_plane, p, p.material) for p in self.planes]
        candidates += [(self._intersect_box, b, b.material) for b in self.boxes]
        candidates += [(self._intersect_sphere, s, s.material) for s in self.spheres]
        if include_object:
            candidates.append((self._intersect_box, self.object_box, self.OBJECT_MATERIAL))
        for intersect, shape, material in candidates:
            t, normals = intersect(shape, origins, dirs)
            closer = t < best_t
            best_t = np.where(closer, t, best_t)
            best_n[closer] = normals[closer]
            best_m[closer] = material
        return best_t, best_n, best_m

    # ------------------------------------------------------------------ shading
    def _albedo(self, material: Material, points: np.ndarray) -> np.ndarray:
        p = points * material.frequency + material.offset
        mix = self.noise.fractal(p, material.octaves)
        detail = self.noise.fractal(p * 4.0 + 3.0, 3)
        if material.pattern == "tiles":
            checker = (np.floor(points[:, 0] * 1.5) + np.floor(points[:, 2] * 1.5)) % 2
            mix = 0.55 * mix + 0.45 * checker
        elif material.pattern == "stripes":
            stripes = 0.5 + 0.5 * np.sin(points @ np.array([5.0, 9.0, 3.0]) + 6.0 * mix)
            mix = 0.5 * mix + 0.5 * stripes
        a, b, c = material.palette
        weight = np.clip((mix - 0.2) / 0.6, 0.0, 1.0)[:, None]
        colour = a * (1.0 - weight) + b * weight
        return colour * (0.65 + 0.35 * detail[:, None]) + c * 0.15 * (detail[:, None] > 0.7)

    def shade(self, origins: np.ndarray, dirs: np.ndarray, include_object: bool):
        """RGB colour of each ray and the distance to its hit (``inf`` for none)."""
        t, normals, materials = self.trace(origins, dirs, include_object)
        return self.shade_hits(origins, dirs, t, normals, materials), t

    def shade_hits(
        self,
        origins: np.ndarray,
        dirs: np.ndarray,
        t: np.ndarray,
        normals: np.ndarray,
        materials: np.ndarray,
    ) -> np.ndarray:
        """RGB colour in [0, 1] of rays whose hits :meth:`trace` found."""
        colours = np.zeros((len(origins), 3))
        hit = np.isfinite(t)
        points = origins + np.where(hit, t, 0.0)[:, None] * dirs
        for index, material in enumerate(self.materials):
            sel = hit & (materials == index)
            if np.any(sel):
                colours[sel] = self._albedo(material, points[sel])
        diffuse = np.clip(normals @ self.light_direction, 0.0, 1.0)
        falloff = 1.0 / (1.0 + 0.04 * np.sum((points - np.array([0.0, 2.0, 0.5])) ** 2, axis=-1))
        light = 0.5 + 0.5 * diffuse + 0.35 * falloff
        return np.clip(colours * light[:, None], 0.0, 1.0)

    # ------------------------------------------------------------------ cameras
    def render(
        self,
        camera_to_world: np.ndarray,
        intrinsics: np.ndarray,
        width: int,
        height: int,
        include_object: bool,
        supersampling: int = 2,
    ):
        """Render one view: image ``(H, W, 3)``, object mask ``(H, W)`` and depth range.

        The mask marks pixels where the object is the nearest surface in at least half of the
        sub-samples, whether or not the object is drawn (``include_object``). The depth range
        ``(near, far)`` is the smallest and largest depth along the optical axis, world units.
        """
        s = supersampling
        origins, dirs = camera_rays(camera_to_world, intrinsics, width, height, s)
        colour, distance = self.shade(origins, dirs, include_object)
        depth = distance * (dirs @ -camera_to_world[:3, 2])
        _, _, materials = self.trace(origins, dirs, include_object=True)
        on_object = (materials == self.OBJECT_MATERIAL).astype(np.float64)
        image = colour.reshape(height, s, width, s, 3).mean(axis=(1, 3))
        coverage = on_object.reshape(height, s, width, s).mean(axis=(1, 3))
        finite = depth[np.isfinite(depth)]
        return image.astype(np.float32), coverage >= 0.5, (float(finite.min()), float(finite.max()))

    def render_pair(
        self, camera_to_world: np.ndarray, intrinsics: np.ndarray, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One view with and without the object, and the object mask, one ray per pixel.

        Equal to two :meth:`render` calls with ``supersampling=1``, at about a third of the cost:
        rays are traced once, and only the object's rays again without it.
        """
        origins, dirs = camera_rays(camera_to_world, intrinsics, width, height, 1)
        t, normals, materials = self.trace(origins, dirs, include_object=True)
        image = self.shade_hits(origins, dirs, t, normals, materials)
        on_object = materials == self.OBJECT_MATERIAL
        background = image.copy()
        if on_object.any():
            o, d = origins[on_object], dirs[on_object]
            background[on_object] = self.shade_hits(o, d, *self.trace(o, d, include_object=False))
        shape = (height, width, 3)
        return (
            image.reshape(shape).astype(np.float32),
            background.reshape(shape).astype(np.float32),
            on_object.reshape(height, width),
        )


def camera_rays(
    camera_to_world: np.ndarray, intrinsics: np.ndarray, width: int, height: int, supersampling: int
) -> tuple[np.ndarray, np.ndarray]:
    """World-space origins and unit directions ``(H·s · W·s, 3)`` of a pinhole camera's rays,
    ``s × s`` per pixel at the sub-pixel centres, row by row (OpenGL camera)."""
    s = supersampling
    offsets = (np.arange(s) + 0.5) / s
    xs = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1)
    ys = (np.arange(height)[:, None] + offsets[None, :]).reshape(-1)
    px, py = np.meshgrid(xs, ys)
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    # OpenGL camera: x right, y up, looking along -z.
    dirs_cam = np.stack([(px - cx) / fx, -(py - cy) / fy, -np.ones_like(px)], axis=-1)
    dirs = dirs_cam.reshape(-1, 3) @ camera_to_world[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    return np.broadcast_to(camera_to_world[:3, 3], dirs.shape), dirs
