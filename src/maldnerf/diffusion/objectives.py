"""Training objectives of the latent-diffusion inpainting model, shared by pretrain and customize.

- :func:`inpainting_loss`: Stable Diffusion inpainting's noise-prediction loss. The UNet sees
  the noisy latents, the mask at latent resolution and the latents of the image with the
  masked pixels set to 0 (mid grey), as the stock inpainting pipeline conditions it; the squared
  error is averaged over the latent cells that a per-cell weight map selects.
- :func:`vae_loss`: the autoencoder's reconstruction (L1 + L2) of known pixels plus a small KL.
- :func:`warmup_cosine`: the learning-rate factor of both stages' schedules.

Images are float ``(B, 3, H, W)`` in [0, 1]; masks float ``(B, 1, H, W)`` in {0, 1}.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def encode(vae: Any, images: torch.Tensor) -> torch.Tensor:
    """Scaled latents (posterior mean) of images in [-1, 1], ``(B, 3, H, W)``."""
    return vae.encode(images.to(vae.dtype)).latent_dist.mode() * vae.config.scaling_factor


def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """A pixel mask ``(B, 1, H, W)`` on the latent grid ``(B, 1, H/f, W/f)``: a cell is masked
    when any of its pixels is (max-pooling)."""
    import torch.nn.functional as F

    return F.max_pool2d(mask, factor)


def inpainting_loss(
    unet: Any,
    vae: Any,
    scheduler: Any,
    text_embeddings: torch.Tensor,
    images: torch.Tensor,
    holes: torch.Tensor,
    weights: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """Noise-prediction loss of the inpainting UNet: the squared error's mean over the latent
    cells, weighted by ``weights``.

    ``holes``: the masked pixels of the conditioning, float ``(B, 1, R, R)``; ``weights``: per
    latent cell ``(B, 1, R/f, R/f)``, >= 0 (e.g. :func:`latent_mask` of the holes to train only
    on them, ones for the whole image); ``noise`` ``(B, 4, R/f, R/f)``; ``timesteps`` ``(B,)``.
    """
    import torch

    pixels = images * 2.0 - 1.0
    with torch.no_grad():
        latents = encode(vae, pixels).float()
        masked_latents = encode(vae, pixels * (holes < 0.5)).float()
    factor = images.shape[-1] // latents.shape[-1]
    noisy = scheduler.add_noise(latents, noise, timesteps)
    model_input = torch.cat([noisy, latent_mask(holes, factor), masked_latents], dim=1)
    prediction = unet(
        model_input.to(unet.dtype), timesteps, text_embeddings.to(unet.dtype)
    ).sample.float()
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    total = (weights * (prediction - target) ** 2).sum()
    return total / (weights.sum() * latents.shape[1]).clamp_min(1.0)


def vae_loss(
    vae: Any,
    images: torch.Tensor,
    known: torch.Tensor,
    kl_weight: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Reconstruction loss (L1 + L2 in [-1, 1] units) of a posterior sample, plus a small KL.

    Only pixels where ``known`` (``(B, 1, H, W)`` in {0, 1}) is 1 count.
    """
    pixels = images * 2.0 - 1.0
    posterior = vae.encode(pixels).latent_dist
    reconstruction = vae.decode(posterior.sample(generator)).sample
    error = reconstruction - pixels
    count = (known.sum() * pixels.shape[1]).clamp_min(1.0)
    reconstruction_loss = ((error.abs() + error**2) * known).sum() / count
    return reconstruction_loss + kl_weight * posterior.kl().mean()


def warmup_cosine(step: int, steps: int, warmup: int) -> float:
    """Learning-rate factor at ``step`` of ``steps``: linear warm-up over ``warmup`` steps, then a
    cosine decay from 1 to 0.1 at the last step."""
    warmup = min(warmup, max(steps - 1, 0))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(steps - warmup - 1, 1)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
