"""The customisation's trainable state: a LoRA on the UNet and learned prompt tokens.

The same for every base model — the pretrained tiny miniature, Stable Diffusion 2 inpainting or
any diffusers inpainting checkpoint: the UNet, the VAE and the text encoder are frozen; a LoRA
(``peft``) is added to the UNet modules ``target_modules`` and ``num_tokens`` new tokens are
added to the tokenizer, their embedding rows initialised from the embedding of ``token_init``.
Only those LoRA weights (fp32) and embedding rows train (AdamW, warm-up + cosine schedule).
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from .customize_data import Batch, CustomizeSettings, sample_batch
from .holes import object_shapes
from .models import (
    DiffusionSettings,
    load_base_pipeline,
    model_resolution,
    move,
    resolve_device,
    resolve_dtype,
    vae_scale_factor,
)
from .objectives import inpainting_loss, latent_mask, warmup_cosine
from .views import TrainingView

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def loss_weights(holes: torch.Tensor, objects: torch.Tensor, factor: int) -> torch.Tensor:
    """Per latent cell: 1 where it touches a hole and not the object mask, else 0 — pixels
    under the object are unknown. ``(B, 1, H, W)`` masks in {0, 1} → ``(B, 1, H/f, W/f)``."""
    return latent_mask(holes, factor) * (1.0 - latent_mask(objects, factor))


class Trainer:
    """The customisation model state: pipeline parts, trained parameters and the optimizer."""

    def __init__(
        self,
        settings: CustomizeSettings,
        diffusion: DiffusionSettings,
        views: list[TrainingView],
        pipeline: Any | None = None,
    ) -> None:
        import torch
        from peft import LoraConfig

        self.settings, self.diffusion, self.views = settings, diffusion, views
        self.shapes = object_shapes([view.mask for view in views])
        self.device = resolve_device(diffusion)
        self.weight_dtype = resolve_dtype(diffusion, self.device)
        if self.weight_dtype == torch.float16:
            log.warning("customize: float16 weights train without loss scaling; prefer bfloat16")
        pipeline = pipeline if pipeline is not None else load_base_pipeline(diffusion)
        self.resolution = model_resolution(diffusion, pipeline)
        self.factor = vae_scale_factor(pipeline)
        self.unet, self.vae = pipeline.unet, pipeline.vae
        self.text_encoder, self.tokenizer = pipeline.text_encoder, pipeline.tokenizer
        self.scheduler = pipeline.scheduler
        self.base_tokenizer = copy.deepcopy(self.tokenizer)
        for module in (self.unet, self.vae, self.text_encoder):
            module.requires_grad_(False)
            module.eval()  # train() only around a step: a resumed run must match exactly

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)  # LoRA initialisation: a function of the seed
            self.token_ids = self._add_tokens()
            self.unet.add_adapter(
                LoraConfig(
                    r=settings.lora_rank,
                    lora_alpha=settings.lora_alpha,
                    init_lora_weights="gaussian",
                    target_modules=list(settings.target_modules),
                )
            )
        move(self.unet, self.device, self.weight_dtype)
        move(self.vae, self.device, self.weight_dtype)
        move(self.text_encoder, self.device, torch.float32)
        if diffusion.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        if diffusion.attention_slicing:
            self.unet.set_attention_slice("auto")

        lora = [p for n, p in self.unet.named_parameters() if "lora_" in n]
        if not lora:
            raise UserError(
                f"customize.target_modules: {settings.target_modules} match no UNet module; "
                "use attention projections such as to_q, to_k, to_v, to_out.0"
            )
        for p in lora:
            p.data = p.data.float()
            p.requires_grad_(True)
        self.lora = lora
        embedding = self.text_encoder.get_input_embeddings().weight
        embedding.requires_grad_(bool(self.token_ids))
        self.embedding = embedding
        groups = [{"params": lora, "lr": settings.learning_rate, "weight_decay": 1e-2}]
        if self.token_ids:
            row_mask = torch.zeros(embedding.shape[0], 1, device=embedding.device)
            row_mask[self.token_ids] = 1.0
            embedding.register_hook(lambda grad: grad * row_mask)
            groups.append(
                {"params": [embedding], "lr": settings.token_learning_rate, "weight_decay": 0.0}
            )
        self.trained_params = [p for g in groups for p in g["params"]]
        self.base_lrs = [g["lr"] for g in groups]
        self.optimizer = torch.optim.AdamW(groups)
        self.total_steps = settings.steps
        self.losses: list[float] = []
        self.seconds = 0.0
        self.input_ids = self.tokenizer(
            settings.prompt,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)

    def _add_tokens(self) -> list[int]:
        import torch

        tokens = self.settings.tokens
        if not tokens:
            return []
        clash = [t for t in tokens if t in self.tokenizer.get_vocab()]
        if clash:
            raise UserError(f"customize: token {clash[0]} already exists in the model's tokenizer")
        init_ids = self.tokenizer(self.settings.token_init, add_special_tokens=False).input_ids
        if not init_ids:
            raise UserError("customize.token_init: must contain at least one character")
        self.tokenizer.add_tokens(tokens)
        self.text_encoder.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
        ids = self.tokenizer.convert_tokens_to_ids(tokens)
        weight = self.text_encoder.get_input_embeddings().weight
        with torch.no_grad():
            weight[ids] = weight[init_ids].mean(dim=0, keepdim=True)
        return list(ids)

    # -- state

    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor that training changes, by name (for checkpoints)."""
        names = {f"unet.{n}": p for n, p in self.unet.named_parameters() if "lora_" in n}
        if self.token_ids:
            names["tokens"] = self.embedding[self.token_ids]
        return {k: v.detach().cpu().clone() for k, v in names.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "tensors": self.trained_tensors(),
            "optimizer": self.optimizer.state_dict(),
            "losses": list(self.losses),
            "seconds": self.seconds,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        tensors = state["tensors"]
        with torch.no_grad():
            for name, p in self.unet.named_parameters():
                if f"unet.{name}" in tensors:
                    p.copy_(tensors[f"unet.{name}"])
            if self.token_ids:
                self.embedding[self.token_ids] = tensors["tokens"].to(self.embedding)
        self.optimizer.load_state_dict(state["optimizer"])
        self.losses = [float(x) for x in state["losses"]]
        self.seconds = float(state["seconds"])

    # -- steps

    def _tensors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        images = torch.from_numpy(batch.images).permute(0, 3, 1, 2).to(self.device)
        objects = torch.from_numpy(batch.objects).float()[:, None].to(self.device)
        holes = torch.from_numpy(batch.holes).float()[:, None].to(self.device)
        return images, objects, holes

    def _autocast(self) -> Any:
        import torch

        enabled = self.device.type == "cuda" and self.weight_dtype != torch.float32
        dtype = self.weight_dtype if enabled else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=enabled)

    def step(self, step: int) -> float:
        """One LoRA + token step; returns the loss (not finite: a :class:`UserError`)."""
        import math

        import torch

        batch = sample_batch(self.views, self.settings, self.resolution, step, self.shapes)
        images, objects, holes = self._tensors(batch)
        generator = torch.Generator().manual_seed(batch.seed)
        latent = self.resolution // self.factor
        noise = torch.randn(images.shape[0], 4, latent, latent, generator=generator)
        timesteps = torch.randint(
            0, self.scheduler.config.num_train_timesteps, (images.shape[0],), generator=generator
        )
        factor = warmup_cosine(step, self.settings.steps, self.settings.warmup_steps)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        weights = loss_weights(holes, objects, self.factor)
        conditioning_holes = torch.maximum(holes, objects) if self.settings.mask_object else holes
        self.unet.train()
        with self._autocast():
            text = self.text_encoder(self.input_ids)[0].expand(images.shape[0], -1, -1)
            loss = inpainting_loss(
                self.unet,
                self.vae,
                self.scheduler,
                text,
                images,
                conditioning_holes,
                weights,
                noise.to(self.device),
                timesteps.to(self.device),
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trained_params, self.settings.max_grad_norm)
        self.optimizer.step()
        self.unet.eval()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise UserError(
                f"customize: loss is {value} at step {step}; lower customize.learning_rate"
            )
        self.losses.append(value)
        return value
