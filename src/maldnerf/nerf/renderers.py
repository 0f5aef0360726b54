"""Volume rendering with nerfacc's batched functions (plain PyTorch on ``(n_rays, n_samples)``).

Densities are integrated over the intervals between consecutive edge ``distances``
``(n, k+1)``; what the last sample does not absorb shows the background colour.
"""

from __future__ import annotations

import nerfacc
import torch
from torch import Tensor


def transmittance(densities: Tensor, distances: Tensor) -> Tensor:
    """Transmittance at the start of each interval, ``(n, k)``."""
    trans, _ = nerfacc.render_transmittance_from_density(
        distances[:, :-1], distances[:, 1:], densities
    )
    return trans


def weights(densities: Tensor, distances: Tensor) -> tuple[Tensor, Tensor]:
    """Rendering weights and transmittance, each ``(n, k)``."""
    w, trans, _ = nerfacc.render_weight_from_density(distances[:, :-1], distances[:, 1:], densities)
    return w, trans


def render_rgb(w: Tensor, rgb: Tensor, background: Tensor) -> Tensor:
    """Colour ``(n, 3)``: weighted sample colours plus the background behind."""
    color = nerfacc.accumulate_along_rays(w, values=rgb)
    return color + (1.0 - w.sum(dim=-1, keepdim=True)) * background


def render_accumulation(w: Tensor) -> Tensor:
    """Opacity ``(n,)``."""
    return w.sum(dim=-1)


def render_depth(w: Tensor, depths: Tensor) -> Tensor:
    """Expected depth ``(n,)`` of the visible surface (normalised by the opacity)."""
    accumulated = w.sum(dim=-1)
    return (w * depths).sum(dim=-1) / accumulated.clamp_min(torch.finfo(w.dtype).eps)
