"""Training data: the training views, their masks and inpainting targets, and ray sampling.

:func:`load_training_views` reads and cross-checks the inputs of the ``train`` stage;
:class:`RayData` holds them on the training device (images as uint8) and draws, without
leaving the device, random rays outside the masks and ``P×P`` patches overlapping them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..cameras import Cameras, load_transforms
from ..errors import UserError
from ..images import read_image
from ..masks import load_masks
from .rays import Rays, pixel_rays

log = logging.getLogger(__name__)


@dataclass
class TrainingViews:
    """The training views of a scene, in memory (images as uint8, masks bool, True = object)."""

    names: list[str]
    images: np.ndarray  # (V, H, W, 3) uint8: the captured views (with the object)
    targets: np.ndarray  # (V, H, W, 3) uint8: the inpainting targets (= images outside the mask)
    masks: np.ndarray  # (V, H, W) bool: dilated object masks
    camera_to_world: np.ndarray  # (V, 4, 4) OpenGL
    width: int
    height: int
    intrinsics: tuple[float, float, float, float]  # fx, fy, cx, cy
    near: float  # smallest depth bound over all frames, world units
    far: float  # largest depth bound over all frames


def _uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def load_training_views(
    transforms: Path, masks_dir: Path, targets_dir: Path
) -> tuple[Cameras, TrainingViews]:
    """Read the training views and check that poses, masks and targets agree."""
    cameras = load_transforms(transforms)
    frames = cameras.split("train")
    if not frames:
        raise UserError(f"{transforms}: no training frames (split: train); rerun the poses stage")
    names = [f.name for f in frames]
    masks = load_masks(masks_dir)
    unposed = sorted(set(masks.train) - set(names))
    if unposed:
        raise UserError(
            f"{transforms}: no camera pose for training view(s) {', '.join(unposed)} "
            f"(they have masks in {masks_dir / 'train'}); rerun the poses stage so every image registers"
        )
    near = min(f.near for f in cameras.frames)
    far = max(f.far for f in cameras.frames)
    if not (np.isfinite(near) and np.isfinite(far) and 0 < near < far):
        raise UserError(f"{transforms}: invalid depth bounds near={near}, far={far}; rerun poses")
    size = (cameras.height, cameras.width)
    images, targets, mask_list = [], [], []
    for frame in frames:
        mask = masks.train.get(frame.name)
        mask_path = masks_dir / "train" / f"{frame.name}.png"
        if mask is None:
            raise UserError(
                f"{mask_path}: no mask for training view {frame.name}; rerun the masks stage"
            )
        target_path = targets_dir / f"{frame.name}.png"
        if not target_path.is_file():
            raise UserError(
                f"{target_path}: no inpainted target for training view {frame.name}; rerun the inpaint stage"
            )
        image, target = read_image(frame.image), read_image(target_path)
        for what, array, path in (
            ("image", image, frame.image),
            ("mask", mask, mask_path),
            ("target", target, target_path),
        ):
            if array.shape[:2] != size:
                raise UserError(
                    f"{path}: {what} is {array.shape[1]}x{array.shape[0]}, transforms.json says "
                    f"{cameras.width}x{cameras.height}; rerun the stage that wrote it"
                )
        if mask.all():
            raise UserError(
                f"{mask_path}: mask covers the whole image, nothing is left to reconstruct; "
                "fix the mask or lower masks.dilation"
            )
        images.append(_uint8(image))
        targets.append(_uint8(target))
        mask_list.append(mask)
    views = TrainingViews(
        names=names,
        images=np.stack(images),
        targets=np.stack(targets),
        masks=np.stack(mask_list),
        camera_to_world=np.stack([f.camera_to_world for f in frames]),
        width=cameras.width,
        height=cameras.height,
        intrinsics=(cameras.fx, cameras.fy, cameras.cx, cameras.cy),
        near=float(near),
        far=float(far),
    )
    return cameras, views


@dataclass
class Patches:
    """``n`` square patches: their rays (row-major per patch) and pixels as ``(n, C, P, P)``."""

    rays: Rays
    real: Tensor  # (n, 3, P, P) float inpainting target
    masks: Tensor  # (n, 1, P, P) float 0/1
    view: Tensor  # (n,)
    top: Tensor  # (n,)
    left: Tensor  # (n,)


class RayData:
    """Training views on the device, with ray and patch sampling.

    Pixels are addressed by flat index ``(view · H + y) · W + x``; the indices of pixels
    outside and inside the masks are precomputed once.
    """

    def __init__(self, views: TrainingViews, camera_to_model: np.ndarray, device: torch.device):
        self.device = device
        self.height, self.width = views.height, views.width
        self.intrinsics = views.intrinsics
        self.images = torch.from_numpy(views.images).to(device)
        self.targets = torch.from_numpy(views.targets).to(device)
        self.masks = torch.from_numpy(views.masks).to(device)
        self.camera_to_model = torch.tensor(camera_to_model, dtype=torch.float32, device=device)
        flat = self.masks.reshape(-1)
        index_dtype = torch.int32 if flat.numel() < 2**31 else torch.int64
        self.outside = torch.nonzero(~flat).squeeze(1).to(index_dtype)
        self.inside = torch.nonzero(flat).squeeze(1).to(index_dtype)
        if len(self.outside) == 0:
            raise UserError("masks cover every training pixel; nothing is left to reconstruct")

    @property
    def num_views(self) -> int:
        return self.images.shape[0]

    def _unflatten(self, flat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        flat = flat.long()
        x = flat % self.width
        y = (flat // self.width) % self.height
        view = flat // (self.width * self.height)
        return view, y, x

    def sample_rays(self, n: int, generator: torch.Generator) -> tuple[Rays, Tensor]:
        """``n`` random rays outside the masks and their colours ``(n, 3)`` in [0, 1]."""
        pick = torch.randint(len(self.outside), (n,), generator=generator, device=self.device)
        view, y, x = self._unflatten(self.outside[pick])
        rgb = self.images[view, y, x].float() / 255.0
        return pixel_rays(self.camera_to_model, self.intrinsics, view, y, x), rgb

    def sample_patches(self, n: int, size: int, generator: torch.Generator) -> Patches:
        """``n`` random ``size×size`` patches, each containing at least one mask pixel."""
        if size > min(self.height, self.width):
            raise UserError(
                f"nerf.patch_size: {size} px patches do not fit in {self.width}x{self.height} "
                "images; lower nerf.patch_size"
            )
        if len(self.inside) == 0:
            raise UserError("the training masks are empty: there is no region to inpaint")
        pick = torch.randint(len(self.inside), (n,), generator=generator, device=self.device)
        view, y, x = self._unflatten(self.inside[pick])
        offset = torch.randint(size, (2, n), generator=generator, device=self.device)
        top = (y - offset[0]).clamp(0, self.height - size)
        left = (x - offset[1]).clamp(0, self.width - size)
        steps = torch.arange(size, device=self.device)
        ys = (top[:, None, None] + steps[None, :, None]).expand(n, size, size)
        xs = (left[:, None, None] + steps[None, None, :]).expand(n, size, size)
        views = view[:, None, None].expand(n, size, size)
        real = self.targets[views, ys, xs].float().permute(0, 3, 1, 2) / 255.0
        masks = self.masks[views, ys, xs].float()[:, None]
        rays = pixel_rays(self.camera_to_model, self.intrinsics, views, ys, xs)
        return Patches(rays, real, masks, view, top, left)

    def view_rays(self, view: int, pixels: Tensor) -> Rays:
        """Rays of flat pixel indices ``pixels`` (``y · W + x``) of one view."""
        pixels = pixels.long()
        views = torch.full_like(pixels, view)
        return pixel_rays(
            self.camera_to_model, self.intrinsics, views, pixels // self.width, pixels % self.width
        )
