"""The pretrain stage's training loop: the tiny pipeline from random weights, in two phases.

See :mod:`.pretrain` for what is trained on and why. Phase 1 trains the VAE alone (L1 + L2
reconstruction, half the crops with their holes greyed out as the inpainting conditioning shows
them, a small KL), then sets the latent scaling factor to 1/std of the latents; phase 2 trains the
UNet with the inpainting objective under the frozen VAE and text encoder. Each step's crops,
noise and timesteps derive from ``(seed, phase, step)``; the log holds one row per step.
"""

from __future__ import annotations

import csv
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import atomic
from ..errors import UserError
from .architectures import build_random_pipeline
from .holes import object_shapes
from .models import vae_scale_factor
from .objectives import encode, inpainting_loss, latent_mask, vae_loss, warmup_cosine
from .pretrain_data import Rooms, sample_batch

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from .pretrain import PretrainSettings

SCALE_STEP = 10**9  # the "step" whose crops measure the VAE's latent scale
LOG_COLUMNS = ["step", "phase", "loss", "lr", "seconds"]


class PretrainTrainer:
    """The tiny pipeline from random weights, its optimizers and the training log."""

    def __init__(self, settings: PretrainSettings, rooms: Rooms, device: torch.device) -> None:
        import torch

        self.settings, self.rooms, self.device = settings, rooms, device
        self.pipeline = build_random_pipeline("tiny", settings.seed)
        self.pipeline.scheduler.register_to_config(prediction_type=settings.prediction_type)
        self.unet, self.vae = self.pipeline.unet, self.pipeline.vae
        self.scheduler = self.pipeline.scheduler
        for module in (self.unet, self.vae, self.pipeline.text_encoder):
            module.to(device).requires_grad_(False).eval()
        self.resolution = int(self.unet.config.sample_size) * vae_scale_factor(self.pipeline)
        self.factor = vae_scale_factor(self.pipeline)
        self.shapes = object_shapes(list(rooms.masks))
        with torch.no_grad():
            self.text = self.pipeline.encode_prompt(settings.caption, device, 1, False)[0]
        self.log: list[dict[str, Any]] = []
        self.began = time.perf_counter()

    def _batch(self, phase: int, step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        import torch

        s = self.settings
        batch = sample_batch(
            self.rooms,
            s.holes,
            s.object_removal,
            s.batch_size,
            self.resolution,
            s.seed * 16 + phase,
            step,
            self.shapes,
        )
        images = torch.from_numpy(batch.images).permute(0, 3, 1, 2).to(self.device)
        holes = torch.from_numpy(batch.holes).float()[:, None].to(self.device)
        return images, holes, batch.seed

    def _record(self, phase: str, step: int, loss: float, lr: float) -> None:
        if not np.isfinite(loss):
            raise UserError(
                f"pretrain: {phase} loss is {loss} at step {step}; lower "
                f"pretrain.{phase}_learning_rate"
            )
        seconds = time.perf_counter() - self.began
        self.log.append({"step": step, "phase": phase, "loss": loss, "lr": lr, "seconds": seconds})

    def train_vae(self) -> None:
        """Phase 1, then the latent scaling factor."""
        import torch

        s = self.settings
        self.vae.requires_grad_(True).train()
        optimizer = torch.optim.AdamW(self.vae.parameters(), lr=s.vae_learning_rate)
        for step in range(s.vae_steps):
            images, holes, seed = self._batch(1, step)
            masked = images * (holes < 0.5) + 0.5 * (holes >= 0.5)
            half = images.shape[0] // 2
            inputs = torch.cat([images[: images.shape[0] - half], masked[images.shape[0] - half :]])
            lr = s.vae_learning_rate * warmup_cosine(step, s.vae_steps, s.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            generator = torch.Generator(self.device).manual_seed(seed)
            loss = vae_loss(self.vae, inputs, torch.ones_like(holes), s.kl_weight, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.vae.parameters(), s.max_grad_norm)
            optimizer.step()
            self._record("vae", step, float(loss.detach()), lr)
        self.vae.requires_grad_(False).eval()
        images, _, _ = self._batch(1, SCALE_STEP)
        self.vae.register_to_config(scaling_factor=1.0)
        with torch.no_grad():
            std = float(encode(self.vae, images * 2.0 - 1.0).float().std())
        self.vae.register_to_config(scaling_factor=1.0 / max(std, 1e-6))

    def train_unet(self) -> None:
        """Phase 2: the inpainting objective over the whole latent."""
        import torch

        s = self.settings
        self.unet.requires_grad_(True).train()
        optimizer = torch.optim.AdamW(self.unet.parameters(), lr=s.unet_learning_rate)
        latent = self.resolution // self.factor
        for step in range(s.unet_steps):
            images, holes, seed = self._batch(2, step)
            generator = torch.Generator().manual_seed(seed)
            noise = torch.randn(images.shape[0], 4, latent, latent, generator=generator)
            timesteps = torch.randint(
                0,
                self.scheduler.config.num_train_timesteps,
                (images.shape[0],),
                generator=generator,
            )
            lr = s.unet_learning_rate * warmup_cosine(step, s.unet_steps, s.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = inpainting_loss(
                self.unet,
                self.vae,
                self.scheduler,
                self.text.expand(images.shape[0], -1, -1),
                images,
                holes,
                1.0 + (s.hole_loss_weight - 1.0) * latent_mask(holes, self.factor),
                noise.to(self.device),
                timesteps.to(self.device),
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.unet.parameters(), s.max_grad_norm)
            optimizer.step()
            self._record("unet", step, float(loss.detach()), lr)
        self.unet.requires_grad_(False).eval()


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """``pretrain_log.csv``: one row per step (loss, learning rate, seconds since the start)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, LOG_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {
                        **row,
                        "loss": f"{row['loss']:.6g}",
                        "lr": f"{row['lr']:.6g}",
                        "seconds": f"{row['seconds']:.2f}",
                    }
                )

    atomic.atomic_write(path, write)
