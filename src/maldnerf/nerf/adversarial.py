"""Masked adversarial training: patch discriminator, GAN losses, R1 penalty, feature matching.

Real patches are the current inpainted targets, fake patches the NeRF's renders of the same
pixels; in both every pixel outside the (dilated) mask is set to exactly zero before the
discriminator sees them (:func:`mask_patches`), so it cannot use the seam between inpainted
and original pixels.

The discriminator (:class:`PatchDiscriminator`) is a small convolutional PatchGAN without
normalisation layers (R1 keeps it smooth): a 3×3 stem convolution to ``channels`` features,
then 3×3 stride-2 convolutions doubling the channels (capped at ``max_channels``) until the
map is at most 4×4, each followed by LeakyReLU(0.2), and a 3×3 convolution to one logit per
position. It returns the logit map and the activations of every layer (for feature
matching). Losses are the non-saturating ones: the discriminator minimises
``softplus(D(fake)) + softplus(−D(real))`` (+ γ/2·R1 lazily every ``r1_interval`` steps,
scaled by the interval; R1 is the squared gradient of the summed logit map, see
:func:`r1_penalty`), the NeRF minimises ``softplus(−D(fake))`` — the paper's ``−Ladv`` —
plus ``λfm`` times the L1 distance between the discriminator's features of real and fake.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def mask_patches(patches: Tensor, masks: Tensor) -> Tensor:
    """``patches`` ``(n, 3, P, P)`` with every pixel outside ``masks`` ``(n, 1, P, P)`` set to 0."""
    return torch.where(masks.bool(), patches, torch.zeros_like(patches))


class PatchDiscriminator(nn.Module):
    """Convolutional PatchGAN discriminator (see the module docstring)."""

    def __init__(self, patch_size: int, channels: int = 32, max_channels: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1)]
        size, width = patch_size, channels
        while size > 4:
            out = min(width * 2, max_channels)
            layers.append(nn.Conv2d(width, out, 3, stride=2, padding=1))
            size, width = (size + 1) // 2, out
        self.layers = nn.ModuleList(layers)
        self.head = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.head(x), features


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Non-saturating discriminator loss."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss (what the NeRF minimises)."""
    return F.softplus(-fake_logits).mean()


def feature_matching_loss(real_features: list[Tensor], fake_features: list[Tensor]) -> Tensor:
    """Mean over layers of the L1 distance of features (real side without gradient)."""
    total = fake_features[0].new_zeros(())
    for real, fake in zip(real_features, fake_features):
        total = total + (fake - real.detach()).abs().mean()
    return total / max(len(fake_features), 1)


def r1_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor) -> Tensor:
    """R1 (StyleGAN2's convention): ``E_x |∇ₓ Σ D(x)|²`` at real patches ``x``, differentiable.

    ``D(x)`` is the patch's logit map: the gradient is that of its *sum* over positions, per
    sample; the squared norm is summed over channels and pixels and averaged over the batch.
    The caller multiplies by ``γ/2`` (and by the interval when it is applied lazily).
    """
    real = real.detach().requires_grad_(True)
    logits = discriminator(real)
    if not logits.requires_grad:  # a discriminator that ignores its input
        return real.new_zeros(())
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True, allow_unused=True)
    if grad is None:
        return real.new_zeros(())
    return grad.square().sum(dim=(1, 2, 3)).mean()
