"""Scene normalisation and parameterisation: where along a ray the samples are and how sample
positions map into the unit cube of the hash grids.

Normalisation (world → model): ``x_model = scale · Rᵀ (x_world − center)`` where ``R`` is the
average camera orientation (model −z is the average viewing direction). COLMAP poses have an
arbitrary scale, so ``center`` and ``scale`` come from the cameras and depth bounds:

- ``contract``: ``center`` is the mean over the training cameras of the point at mid depth on
  the optical axis, ``scale`` makes the farthest camera 1 from it. Positions are contracted with
  Mip-NeRF 360's ``x ↦ (2 − 1/|x|)·x/|x|`` outside the unit ball (L2), which maps all of space
  into the ball of radius 2 and then into ``[0, 1]^3``. Samples are spaced linearly in
  disparity between ``near`` and ``far`` (world depths).
- ``ndc``: ``center`` is the mean camera position, ``scale = 1/(0.75 · near)`` (LLFF), and rays
  are warped into normalised device coordinates of the average camera with the near plane at
  model depth 1; samples are spaced linearly in NDC depth ``s ∈ [0, s_far]``.

In both, a ray's normalised distance ``s ∈ [0, 1]`` (where proposal sampling and the
distortion loss work) maps to world depth with :meth:`s_to_t`; ``t`` is the depth along the
camera's optical axis in world units (see :mod:`.rays`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from .rays import Rays


@dataclass
class SceneNormalization:
    """The similarity transform from world to model space."""

    rotation: np.ndarray  # (3, 3): model axes in world coordinates (columns)
    center: np.ndarray  # (3,) world
    scale: float

    def world_to_model(self) -> np.ndarray:
        """4×4 matrix mapping homogeneous world points to model space."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.scale * self.rotation.T
        matrix[:3, 3] = -self.scale * self.rotation.T @ self.center
        return matrix

    def camera_to_model(self, camera_to_world: np.ndarray) -> np.ndarray:
        """Camera-to-model matrices ``(..., 4, 4)`` from OpenGL camera-to-world matrices."""
        return self.world_to_model() @ camera_to_world

    def to_dict(self) -> dict[str, Any]:
        return {
            "rotation": self.rotation.tolist(),
            "center": self.center.tolist(),
            "scale": float(self.scale),
            "world_to_model": self.world_to_model().tolist(),
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> SceneNormalization:
        return SceneNormalization(
            np.asarray(data["rotation"], dtype=np.float64),
            np.asarray(data["center"], dtype=np.float64),
            float(data["scale"]),
        )


def average_rotation(camera_to_world: np.ndarray) -> np.ndarray:
    """Mean orientation (columns x, y, z) of OpenGL cameras ``(V, 4, 4)``."""
    backward = camera_to_world[:, :3, 2].sum(axis=0)
    up = camera_to_world[:, :3, 1].sum(axis=0)
    z = backward / max(np.linalg.norm(backward), 1e-12)
    x = np.cross(up, z)
    if np.linalg.norm(x) < 1e-8:  # degenerate: pick any perpendicular axis
        x = np.cross(np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0]), z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def normalize_scene(
    kind: str, camera_to_world: np.ndarray, near: float, far: float
) -> SceneNormalization:
    """Normalisation for parameterisation ``kind`` from training cameras and depth bounds."""
    rotation = average_rotation(camera_to_world)
    positions = camera_to_world[:, :3, 3]
    if kind == "ndc":
        forward = -camera_to_world[:, :3, 2]
        cosines = forward @ -rotation[:, 2]
        if cosines.min() < np.cos(np.radians(60.0)):
            raise UserError(
                "nerf.parameterization: ndc needs a forward-facing capture, but some cameras look "
                f"{np.degrees(np.arccos(cosines.min())):.0f}° away from the mean view; use contract"
            )
        return SceneNormalization(rotation, positions.mean(axis=0), 1.0 / (0.75 * near))
    mid = 0.5 * (near + far)
    focus = positions - camera_to_world[:, :3, 2] * mid
    center = focus.mean(axis=0)
    radius = np.linalg.norm(positions - center, axis=1).max()
    return SceneNormalization(rotation, center, 1.0 / max(radius, 1e-3 * far, 1e-9))


def contract(x: Tensor) -> Tensor:
    """Mip-NeRF 360 contraction (L2): identity in the unit ball, all of space into radius 2."""
    norm = x.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    return torch.where(norm <= 1.0, x, (2.0 - 1.0 / norm) * (x / norm))


class Parameterization:
    """Maps normalised ray distances ``s`` to depths and unit-cube positions."""

    kind: str

    def s_to_t(self, rays: Rays, s: Tensor) -> Tensor:
        """World depth ``t`` of normalised distances ``s`` ``(n, k)``."""
        raise NotImplementedError

    def samples(self, rays: Rays, edges: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For interval edges ``s`` ``(n, k+1)``: unit-cube positions of the interval midpoints
        ``(n, k, 3)``, edge distances for volume rendering ``(n, k+1)`` and midpoint depths
        ``(n, k)`` in world units."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


class ContractParameterization(Parameterization):
    """Linear-in-disparity samples between ``near`` and ``far`` (world depths), contracted space."""

    kind = "contract"

    def __init__(self, near: float, far: float) -> None:
        self.near, self.far = float(near), float(far)

    def s_to_t(self, rays: Rays, s: Tensor) -> Tensor:
        return 1.0 / (s / self.far + (1.0 - s) / self.near)

    def samples(self, rays: Rays, edges: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        t = self.s_to_t(rays, edges)
        mid = 0.5 * (t[:, 1:] + t[:, :-1])
        points = rays.origins[:, None, :] + mid[..., None] * rays.directions[:, None, :]
        positions = contract(points) * 0.25 + 0.5
        distances = t * rays.directions.norm(dim=-1, keepdim=True)
        return positions, distances, mid

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "near": self.near, "far": self.far}


class NdcParameterization(Parameterization):
    """LLFF normalised device coordinates of the average camera, near plane at model depth 1.

    NDC x and y are mapped from ``[-xy_extent, xy_extent]`` and z from ``[-1, 1]`` to the unit
    cube (positions outside are clamped by the grids).
    """

    kind = "ndc"
    xy_extent = 1.5

    def __init__(self, fx: float, fy: float, width: int, height: int, s_far: float) -> None:
        self.fx, self.fy, self.width, self.height = float(fx), float(fy), int(width), int(height)
        self.s_far = float(s_far)

    def _ndc(self, rays: Rays) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        o, d = rays.origins, rays.directions
        dz = d[:, 2].clamp(max=-1e-6)  # NDC needs rays going forward (model -z)
        shift = -(1.0 + o[:, 2]) / dz
        o = o + shift[:, None] * d
        ox, oy, oz = o.unbind(-1)
        dx, dy = d[:, 0], d[:, 1]
        ax, ay = -2.0 * self.fx / self.width, -2.0 * self.fy / self.height
        o_ndc = torch.stack([ax * ox / oz, ay * oy / oz, 1.0 + 2.0 / oz], dim=-1)
        d_ndc = torch.stack([ax * (dx / dz - ox / oz), ay * (dy / dz - oy / oz), -2.0 / oz], -1)
        return o_ndc, d_ndc, shift, dz

    def s_to_t(self, rays: Rays, s: Tensor) -> Tensor:
        _, _, shift, dz = self._ndc(rays)
        ndc_t = s * self.s_far
        # On the shifted ray (origin on the near plane z = -1), NDC depth t' is reached at
        # parameter t' / ((1 - t') · (-dz)).
        return shift[:, None] + ndc_t / ((1.0 - ndc_t) * (-dz[:, None]))

    def samples(self, rays: Rays, edges: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        o_ndc, d_ndc, shift, dz = self._ndc(rays)
        ndc_t = edges * self.s_far
        mid = 0.5 * (ndc_t[:, 1:] + ndc_t[:, :-1])
        points = o_ndc[:, None, :] + mid[..., None] * d_ndc[:, None, :]
        low = points.new_tensor([-self.xy_extent, -self.xy_extent, -1.0])
        high = points.new_tensor([self.xy_extent, self.xy_extent, 1.0])
        positions = (points - low) / (high - low)
        distances = ndc_t * d_ndc.norm(dim=-1, keepdim=True)
        depth = shift[:, None] + mid / ((1.0 - mid) * (-dz[:, None]))
        return positions, distances, depth

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "fx": self.fx,
            "fy": self.fy,
            "width": self.width,
            "height": self.height,
            "s_far": self.s_far,
        }


def make_parameterization(
    kind: str,
    normalization: SceneNormalization,
    near: float,
    far: float,
    fx: float,
    fy: float,
    width: int,
    height: int,
) -> Parameterization:
    """The parameterisation for world depth bounds ``near``/``far`` (already widened)."""
    if kind == "ndc":
        far_model = far * normalization.scale  # model depth of the far bound; near plane at 1
        s_far = min(1.0 - 1.0 / max(far_model, 1.0 + 1e-3), 1.0 - 1e-4)
        return NdcParameterization(fx, fy, width, height, s_far)
    return ContractParameterization(near, far)


def parameterization_from_dict(data: dict[str, Any]) -> Parameterization:
    if data["kind"] == "ndc":
        return NdcParameterization(
            data["fx"], data["fy"], data["width"], data["height"], data["s_far"]
        )
    return ContractParameterization(data["near"], data["far"])
