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


@dataclass
class SyntheticView:
    """One rendered view: RGB image, object mask, and camera."""

    image: np.ndarray  # (H, W, 3) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool, True where the object is (or would be, for test views)
    camera_to_world: np.ndarray  # (4, 4) float64, OpenGL convention
    depth_range: tuple[float, float]  # (near, far) along the optical axis, world units
    background: np.ndarray | None = None  # training views: the same view without the object


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


class SyntheticScene:
    """The room-corner scene; ``render`` ray-traces it from any pinhole camera."""

    OBJECT_MATERIAL = 0

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.noise = ValueNoise(rng)
        self.materials = [self._object_material(rng)] + [
            self._random_material(rng, pattern)
            for pattern in ("tiles", "noise", "stripes", "noise", "noise", "stripes", "noise")
        ]
        self.planes = [
            Plane(np.array([0.0, 1.0, 0.0]), -1.0, 1),  # floor y = -1
            Plane(np.array([0.0, 0.0, 1.0]), -4.5, 2),  # back wall z = -4.5
            Plane(np.array([1.0, 0.0, 0.0]), -3.2, 3),  # left wall x = -3.2
            Plane(np.array([-1.0, 0.0, 0.0]), -3.2, 4),  # right wall x = 3.2
            Plane(np.array([0.0, -1.0, 0.0]), -2.6, 2),  # ceiling y = 2.6
        ]
        self.boxes = [
            Box(np.array([-2.0, -0.35, -3.5]), np.array([0.55, 0.65, 0.45]), 0.35, 5),
            Box(np.array([1.7, -0.6, -3.0]), np.array([0.6, 0.4, 0.5]), -0.5, 6),
            Box(np.array([-0.6, -0.8, -3.9]), np.array([0.9, 0.2, 0.3]), 0.1, 7),
        ]
        self.spheres = [Sphere(np.array([0.55, -0.5, -3.3]), 0.5, 3)]
        # The object to remove: a box standing on the floor in front of the furniture.
        self.object_box = Box(np.array([0.05, -0.55, -1.7]), np.array([0.32, 0.45, 0.32]), 0.6, 0)
        self.light_direction = np.array([-0.4, 0.8, 0.45]) / np.linalg.norm([-0.4, 0.8, 0.45])

    @staticmethod
    def _random_material(rng: np.random.Generator, pattern: str) -> Material:
        palette = rng.uniform(0.05, 0.95, size=(3, 3))
        palette[1] = 1.0 - palette[0] * 0.8  # a contrasting second colour
        return Material(palette, float(rng.uniform(1.5, 3.0)), 5, pattern, rng.uniform(0, 100, 3))

    @staticmethod
    def _object_material(rng: np.random.Generator) -> Material:
        palette = np.array([[0.85, 0.12, 0.1], [0.95, 0.8, 0.2], [0.15, 0.1, 0.6]])
        return Material(palette, 3.0, 3, "stripes", rng.uniform(0, 100, 3))

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
        colours = np.clip(colours * light[:, None], 0.0, 1.0)
        return colours, t

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
        offsets = (np.arange(s) + 0.5) / s
        xs = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1)
        ys = (np.arange(height)[:, None] + offsets[None, :]).reshape(-1)
        px, py = np.meshgrid(xs, ys)
        fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
        # OpenGL camera: x right, y up, looking along -z.
        dirs_cam = np.stack([(px - cx) / fx, -(py - cy) / fy, -np.ones_like(px)], axis=-1)
        dirs = dirs_cam.reshape(-1, 3) @ camera_to_world[:3, :3].T
        dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
        origins = np.broadcast_to(camera_to_world[:3, 3], dirs.shape)
        colour, distance = self.shade(origins, dirs, include_object)
        depth = distance * (dirs @ -camera_to_world[:3, 2])
        _, _, materials = self.trace(origins, dirs, include_object=True)
        on_object = (materials == self.OBJECT_MATERIAL).astype(np.float64)
        image = colour.reshape(height, s, width, s, 3).mean(axis=(1, 3))
        coverage = on_object.reshape(height, s, width, s).mean(axis=(1, 3))
        finite = depth[np.isfinite(depth)]
        return image.astype(np.float32), coverage >= 0.5, (float(finite.min()), float(finite.max()))


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
