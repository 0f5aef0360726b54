"""Losses of the reconstructed region (photometric, interlevel, distortion, decay) and the
inpainted-region reconstruction losses of the ablations (L1, LPIPS)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import UserError
from .encodings import HashEncoding
from .samplers import searchsorted_outer

log = logging.getLogger(__name__)

ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"


def pixel_loss(rgb: Tensor, target: Tensor) -> Tensor:
    """Mean squared error."""
    return (rgb - target).square().mean()


def interlevel_loss(
    edges: Tensor,
    cdfs: Tensor,
    proposal_levels: list[tuple[Tensor, Tensor]],
    use_cuda_kernel: bool = False,
) -> Tensor:
    """Mip-NeRF 360 proposal loss, summed over proposal levels, mean over rays.

    For each interval of the field's samples (``edges``, CDF ``cdfs`` at the edges, gradients
    stopped), the proposal's weight over the intervals overlapping it must bound the field's
    weight from above: ``Σ max(0, w − w_outer)² / (w + ε)``.
    """
    cdfs = cdfs.detach()
    w = cdfs[:, 1:] - cdfs[:, :-1]
    total = edges.new_zeros(())
    for key_edges, key_cdfs in proposal_levels:
        left, right = searchsorted_outer(key_edges, edges, use_cuda_kernel)
        outer = key_cdfs.gather(1, right[:, 1:]) - key_cdfs.gather(1, left[:, :-1])
        total = total + (torch.clamp(w - outer, min=0.0).square() / (w + 1e-7)).sum(-1).mean()
    return total


def distortion_loss(weights: Tensor, edges: Tensor) -> Tensor:
    """Mip-NeRF 360 distortion loss in normalised distance, mean over rays.

    ``Σ_ij w_i w_j |m_i − m_j| + ⅓ Σ_i w_i² (s_{i+1} − s_i)`` with ``m`` the interval midpoints,
    computed in O(k) with prefix sums.
    """
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    widths = edges[:, 1:] - edges[:, :-1]
    w_before = torch.cumsum(weights, dim=-1) - weights
    wm = weights * mids
    wm_before = torch.cumsum(wm, dim=-1) - wm
    pairwise = 2.0 * (weights * (mids * w_before - wm_before)).sum(-1)
    self_term = (weights.square() * widths).sum(-1) / 3.0
    return (pairwise + self_term).mean()


def decay_loss(encodings: list[HashEncoding]) -> Tensor:
    """Zip-NeRF weight decay: per hash-grid level the mean squared parameter, summed.

    The mean is over the rows some grid vertex indexes (``reachable_masks``; rows no point can
    reach would only dilute it) and over the features; a masked sum, so no host sync.
    """
    total = encodings[0].params.new_zeros(())
    for encoding in encodings:
        levels = zip(encoding.level_slices(), encoding.reachable_masks(), encoding.reachable_counts)
        for rows, mask, count in levels:
            squares = encoding.params[rows].square()
            if mask is not None:
                squares = torch.where(mask[:, None], squares, torch.zeros_like(squares))
            total = total + squares.sum() / (count * encoding.features_per_level)
    return total


def masked_l1(fake: Tensor, real: Tensor, masks: Tensor) -> Tensor:
    """Mean absolute error over the masked pixels of ``(n, 3, P, P)`` patches, masks ``(n, 1, P, P)``."""
    count = masks.sum().clamp_min(1.0) * fake.shape[1]
    return ((fake - real).abs() * masks).sum() / count


def alexnet_weights_path() -> Path:
    """Where torchvision looks for AlexNet's ImageNet weights (LPIPS backbone)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS


def check_lpips_available() -> None:
    """Raise a :class:`UserError` unless LPIPS can be built with its pretrained backbone."""
    path = alexnet_weights_path()
    if not path.is_file():
        raise UserError(
            f"nerf.inpainted_loss: lpips needs torchvision's AlexNet ImageNet weights at {path}; "
            f"copy {ALEXNET_WEIGHTS} there (https://download.pytorch.org/models/{ALEXNET_WEIGHTS}) "
            "or use inpainted_loss: l1"
        )
    try:
        import lpips
    except ImportError:
        raise UserError(
            "nerf.inpainted_loss: lpips needs the lpips package; pip install lpips"
        ) from None
    linear = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    if not linear.is_file():
        raise UserError(
            f"nerf.inpainted_loss: lpips linear weights {linear} missing; reinstall lpips"
        )


def load_lpips(device: torch.device) -> nn.Module:
    """LPIPS (AlexNet) with pretrained weights, frozen; never a randomly initialised backbone.

    Both weight files are read with ``torch.load(weights_only=True)`` (torchvision's own
    loader unpickles them); a truncated or foreign file is a one-line :class:`UserError`.
    """
    check_lpips_available()
    import lpips

    from ..evaluate.backbones import lpips_module

    linear = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    module, _ = lpips_module(alexnet_weights_path(), linear)
    return module.to(device)


class LpipsLoss(nn.Module):
    """LPIPS of masked patches in [0, 1]; patches smaller than 64 px are upsampled (AlexNet's
    pooling needs about 32 px)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, fake: Tensor, real: Tensor) -> Tensor:
        if fake.shape[-1] < 64:
            size = (64, 64)
            fake = nn.functional.interpolate(fake, size=size, mode="bilinear", align_corners=False)
            real = nn.functional.interpolate(real, size=size, mode="bilinear", align_corners=False)
        return self.module(fake * 2.0 - 1.0, real * 2.0 - 1.0).mean()
