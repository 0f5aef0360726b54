"""Camera rays from :class:`maldnerf.cameras.Cameras` (OpenGL camera-to-world, pinhole).

A pixel ``(y, x)`` is sampled at its centre ``(x + 0.5, y + 0.5)``; its camera-space direction
is ``((x + 0.5 − cx)/fx, −(y + 0.5 − cy)/fy, −1)`` (x right, y up, looking along −z). Directions
are *not* normalised: their camera-z component is −1, so the ray parameter ``t`` is the depth
along the optical axis, in world units, like the ``near``/``far`` bounds of ``transforms.json``.
Rays live in model space (see :class:`.parameterization.SceneNormalization`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Rays:
    """A batch of rays in model space."""

    origins: Tensor  # (n, 3)
    directions: Tensor  # (n, 3), camera-z component -1 in world scale: t is world depth
    viewdirs: Tensor  # (n, 3), unit length

    def __len__(self) -> int:
        return self.origins.shape[0]

    def __getitem__(self, index: slice | Tensor) -> Rays:
        return Rays(self.origins[index], self.directions[index], self.viewdirs[index])

    @staticmethod
    def cat(items: list[Rays]) -> Rays:
        return Rays(
            torch.cat([r.origins for r in items]),
            torch.cat([r.directions for r in items]),
            torch.cat([r.viewdirs for r in items]),
        )


def pixel_rays(
    camera_to_model: Tensor,
    intrinsics: tuple[float, float, float, float],
    view: Tensor,
    y: Tensor,
    x: Tensor,
) -> Rays:
    """Rays through pixels ``(y, x)`` of views ``view`` (flat index tensors of equal shape).

    ``camera_to_model``: ``(V, 4, 4)`` float32, camera-to-model matrices (OpenGL axes, rotation
    block carries the model scale); ``intrinsics``: ``(fx, fy, cx, cy)`` in pixels.
    """
    fx, fy, cx, cy = intrinsics
    x = x.reshape(-1).to(camera_to_model.dtype)
    y = y.reshape(-1).to(camera_to_model.dtype)
    camera = torch.stack([(x + 0.5 - cx) / fx, -(y + 0.5 - cy) / fy, -torch.ones_like(x)], dim=-1)
    matrix = camera_to_model[view.reshape(-1)]  # (n, 4, 4)
    directions = torch.einsum("nij,nj->ni", matrix[:, :3, :3], camera)
    origins = matrix[:, :3, 3]
    viewdirs = directions / directions.norm(dim=-1, keepdim=True)
    return Rays(origins, directions, viewdirs)


def image_rays(
    camera_to_model: Tensor, intrinsics: tuple[float, float, float, float], width: int, height: int
) -> Rays:
    """All rays of one view, row-major (``(height·width)`` rays); ``camera_to_model`` is ``(4, 4)``."""
    device = camera_to_model.device
    y, x = torch.meshgrid(
        torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
    )
    view = torch.zeros(height * width, dtype=torch.int64, device=device)
    return pixel_rays(camera_to_model[None], intrinsics, view, y, x)
