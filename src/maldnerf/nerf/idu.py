"""Iterative dataset update (IDU): re-inpaint the training views from the current NeRF.

Every ``U`` iterations (rounds at ``U, 2U, …`` below the last iteration ``K``) each training
view is rendered inside its mask, composited over the captured image outside it, and handed
to the inpainting model with strength ``t(k) = t_max − (t_max − t_min)·sqrt(k/K)`` (partial
DDIM from noise level ``t``): structure the NeRF already agrees on across views survives, and
details are refined coarse to fine. The results (composited again, so pixels outside the mask
stay the captured ones, and stored as 8-bit like the initial targets) become the new
adversarial "real" patches.

The inpainting model is anything with :class:`Reinpainter`'s ``inpaint`` method
(``maldnerf.diffusion.inpaint.Inpainter``); tests use fakes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..diffusion.schedule import idu_strength
from .data import RayData
from .model import NerfModel, render_rays
from .settings import IduSettings

log = logging.getLogger(__name__)

__all__ = [
    "Reinpainter",
    "ReinpainterSource",
    "idu_strength",
    "idu_iterations",
    "update_targets",
    "snapshot",
]


class Reinpainter(Protocol):
    """What the dataset update needs from the inpainting model."""

    def inpaint(
        self,
        images: list[np.ndarray],
        masks: list[np.ndarray],
        strength: float,
        seeds: list[int],
    ) -> list[np.ndarray]:
        """Inpaint ``images`` (float32 ``(H, W, 3)`` in [0, 1]) inside ``masks`` (bool
        ``(H, W)``, True = fill) starting from noise level ``strength`` ∈ (0, 1]; one seed per
        image. Returns the composited images (float32 ``(H, W, 3)`` in [0, 1])."""
        ...


@dataclass(frozen=True)
class ReinpainterSource:
    """What the dataset update's inpainting model is built from, for the resume fingerprint.

    ``settings``: name → settings dataclass or plain JSON data, e.g. ``{"diffusion":
    DiffusionSettings, "inpaint": InpaintSettings}``; ``customization``: the customize stage's
    output folder, or ``None`` for the base model.
    """

    settings: dict[str, Any]
    customization: Path | None = None


def idu_iterations(settings: IduSettings, total: int) -> list[int]:
    """Iterations at which a round runs (none when IDU is off)."""
    if not settings.enabled:
        return []
    return list(range(settings.every, total, settings.every))


def round_seed(seed: int, round_index: int, view: int) -> int:
    """Seed of one view's inpainting in one round (deterministic, below 2**31)."""
    return (seed * 1_000_003 + round_index * 10_007 + view) % 2**31


@torch.no_grad()
def render_composite(model: NerfModel, data: RayData, view: int, chunk: int) -> np.ndarray:
    """The captured image of ``view`` with the NeRF's render inside its mask, float32 HWC."""
    mask = data.masks[view]
    pixels = torch.nonzero(mask.reshape(-1)).squeeze(1)
    image = data.images[view].float() / 255.0
    if len(pixels):
        rgb = render_rays(model, data.view_rays(view, pixels), chunk)["rgb"].clamp(0.0, 1.0)
        image.reshape(-1, 3)[pixels] = rgb
    return image.cpu().numpy()


def update_targets(
    model: NerfModel,
    data: RayData,
    reinpainter: Reinpainter,
    strength: float,
    round_index: int,
    seed: int,
    batch_size: int,
    chunk: int,
) -> None:
    """Replace ``data.targets`` of every view with a re-inpainted render (see module doc)."""
    was_training = model.training
    model.eval()
    try:
        for start in range(0, data.num_views, batch_size):
            views = list(range(start, min(start + batch_size, data.num_views)))
            images = [render_composite(model, data, v, chunk) for v in views]
            masks = [data.masks[v].cpu().numpy() for v in views]
            seeds = [round_seed(seed, round_index, v) for v in views]
            results = reinpainter.inpaint(images, masks, strength, seeds)
            if len(results) != len(views):
                raise RuntimeError(
                    f"inpainting model returned {len(results)} images for {len(views)}"
                )
            for v, image, mask, result in zip(views, images, masks, results):
                result = np.asarray(result, dtype=np.float32)
                if result.shape != image.shape or not np.all(np.isfinite(result)):
                    raise RuntimeError(
                        f"inpainting model returned a {result.shape} image with non-finite "
                        f"values or the wrong size for view {v} (expected {image.shape})"
                    )
                original = data.images[v].cpu().numpy()
                target = np.where(
                    mask[..., None],
                    (np.clip(result, 0, 1) * 255.0 + 0.5).astype(np.uint8),
                    original,
                )
                data.targets[v] = torch.from_numpy(target).to(data.targets.device)
    finally:
        model.train(was_training)


def snapshot(targets: np.ndarray, width: int, columns: int = 6) -> np.ndarray:
    """Contact sheet of uint8 targets ``(V, H, W, 3)`` as a float image (thumbnails ``width`` wide)."""
    from ..images import resize_image, tile

    thumbs = [
        resize_image(
            t.astype(np.float32) / 255.0, (width, max(1, round(t.shape[0] * width / t.shape[1])))
        )
        for t in targets
    ]
    return tile(thumbs, columns)
