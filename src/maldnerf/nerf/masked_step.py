"""The masked half of a training step: L^m of the rendered patches and the discriminator update.

:class:`MaskedTraining` holds the patch discriminator (initialised from ``seed + 1``), its Adam
optimiser (betas 0 and 0.99) and, for the ``lpips`` ablation, the LPIPS loss. Real patches are
the inpainting targets, fake ones the NeRF's renders; both are masked
(:func:`.adversarial.mask_patches`) before anything sees them. See :mod:`.adversarial` for the
losses and the R1 convention.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .adversarial import (
    PatchDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    mask_patches,
    r1_penalty,
)
from .data import Patches
from .losses import LpipsLoss, load_lpips, masked_l1
from .runtime import nonfinite
from .settings import NerfSettings
from .train_log import discriminator_stats


class MaskedTraining:
    """Discriminator, its optimiser and the L^m terms of one training run."""

    def __init__(
        self, nerf: NerfSettings, device: torch.device, lpips_module: torch.nn.Module | None = None
    ) -> None:
        self.nerf = nerf
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(nerf.seed + 1)
            self.discriminator = PatchDiscriminator(
                nerf.patch_size, nerf.adversarial.channels, nerf.adversarial.max_channels
            ).to(device)
        self.optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=nerf.adversarial.lr, betas=(0.0, 0.99), fused=True
        )
        self.lpips: LpipsLoss | None = None
        if nerf.inpainted_loss == "lpips":
            self.lpips = LpipsLoss(lpips_module if lpips_module is not None else load_lpips(device))

    def adversarial_on(self, step: int) -> bool:
        return self.nerf.adversarial.enabled and step >= self.nerf.adversarial.warmup

    def patches_needed(self, step: int) -> bool:
        return self.adversarial_on(step) or self.nerf.inpainted_loss != "none"

    def losses(
        self, fake: Tensor, patches: Patches, step: int
    ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """L^m terms of the rendered patches ``fake`` ``(n, 3, P, P)``; returns them and the
        masked real/fake patches."""
        real, fake = mask_patches(patches.real, patches.masks), mask_patches(fake, patches.masks)
        losses: dict[str, Tensor] = {}
        if self.adversarial_on(step):
            self.discriminator.requires_grad_(False)
            fake_logits, fake_features = self.discriminator(fake)
            with torch.no_grad():
                _, real_features = self.discriminator(real)
            losses["adversarial"] = generator_loss(fake_logits)
            losses["feature_matching"] = feature_matching_loss(real_features, fake_features)
        if self.nerf.inpainted_loss == "l1":
            losses["inpainted"] = masked_l1(fake, real, patches.masks)
        elif self.nerf.inpainted_loss == "lpips":
            assert self.lpips is not None
            losses["inpainted"] = self.lpips(fake, real)
        return losses, real, fake

    def discriminator_step(self, real: Tensor, fake: Tensor, step: int) -> dict[str, Tensor]:
        """Non-saturating discriminator loss, lazy R1 on the real patches: every
        ``r1_interval`` steps after the warm-up, ``γ/2 · r1_interval · R1``."""
        adv = self.nerf.adversarial
        self.discriminator.requires_grad_(True)
        real_logits, _ = self.discriminator(real)
        fake_logits, _ = self.discriminator(fake)
        loss = discriminator_loss(real_logits, fake_logits)
        out = {"discriminator": loss, **discriminator_stats(real_logits, fake_logits)}
        if (step - adv.warmup) % adv.r1_interval == 0:
            r1 = r1_penalty(lambda x: self.discriminator(x)[0], real)
            loss = loss + 0.5 * self.nerf.loss.r1 * adv.r1_interval * r1
            out["r1"] = r1
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.found_inf = nonfinite(loss, self.discriminator.parameters())
        self.optimizer.step()
        return {k: v.detach() for k, v in out.items()}
