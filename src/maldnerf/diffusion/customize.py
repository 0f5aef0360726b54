"""The ``customize`` stage: adapt the inpainting model to one scene (MALD-NeRF §3.2).

Training data are the scene's own training views. Each sample is a random square crop (side a
random fraction of the shorter image side, at least the model resolution) resized to the model
resolution, in which holes are masked: 1-3 random rectangles (the paper's choice) and, with
probability ``object_shaped_holes``, one hole shaped like a dilated object mask of a random view
placed at a random spot (the shape the model must fill at inference). The model fills the holes
back in from the rest of the crop. The loss is the standard noise-prediction loss of the
inpainting UNet, counted only on latent cells that touch a hole and do not touch the dilated
object mask (both max-pooled to latent resolution): pixels under the object are unknown. A
rectangle lying wholly inside the object mask therefore contributes exactly zero loss. The
conditioning follows the stock inpainting pipeline (mask + latents of the crop with the holes
greyed out); the object stays visible in it unless ``mask_object`` is set (on the synthetic
scene leaving it visible inpainted better: 18.2 vs 17.1 dB masked PSNR).

What trains:

- a model from the hub or a folder: a LoRA on the UNet's attention projections
  (``target_modules``) and ``num_tokens`` new text tokens ``<scene-0> … <scene-N-1>`` used in
  the prompt (``prompt_template``); the rest of the text encoder, the UNet and the VAE are frozen.
- ``tiny`` (random weights, nothing to adapt): first the VAE alone for ``tiny_vae_steps`` steps
  (L1 + L2 reconstruction outside the object mask, so the decoder learns the background and
  not the object; small KL), then its latent scaling factor is set to 1/std of the latents,
  then the whole UNet together with the LoRA and tokens for ``steps`` steps, VAE frozen.

Output folder ``results/{scene}/diffusion/{customization}/``::

    pytorch_lora_weights.safetensors   UNet LoRA, diffusers format (pipeline.load_lora_weights)
    token_embeddings.safetensors       {"<scene-0>": (dim,), ...} (pipeline.load_textual_inversion)
    base/                              tiny only: the trained base pipeline (save_pretrained)
    customization.json                 base model, prompt, tokens, steps, losses, time, settings
    README.md                          how to load this in stock diffusers

Resuming: every ``checkpoint_every`` steps the trained tensors, the optimizer states and the
loss history are written atomically to ``resume_dir/checkpoint.pt`` (a folder outside the
output, which Snakemake deletes on failure). A rerun with the same settings and inputs continues
from there; every step draws its randomness from ``(seed, step)`` only, so an interrupted and
resumed run ends with exactly the weights of an uninterrupted one (on the same device).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import atomic, interrupt
from ..errors import UserError
from ..settings import require
from .models import (
    BASE_DIR,
    LORA_FILE,
    MANIFEST,
    TINY,
    TOKENS_FILE,
    DiffusionSettings,
    _assemble,
    load_base_pipeline,
    model_resolution,
    move,
    out_of_memory_hint,
    resolve_device,
    resolve_dtype,
    vae_scale_factor,
)
from .views import TrainingView, load_training_views

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
SCALE_STEP = 10**9  # the "step" whose crops measure the tiny VAE's latent scale
OOM_HINT = (
    "lower customize.batch_size or diffusion.resolution, or set "
    "diffusion.gradient_checkpointing: true"
)


@dataclass
class CustomizeSettings:
    """Settings of the customize stage."""

    steps: int = 500
    """UNet training steps (LoRA + tokens; for ``tiny`` the whole UNet)."""
    batch_size: int = 8
    """Crops per step."""
    learning_rate: float = 1e-4
    """Learning rate of the LoRA weights (AdamW)."""
    lora_rank: int = 8
    """LoRA rank."""
    lora_alpha: float = 8.0
    """LoRA alpha (the update is scaled by alpha / rank)."""
    target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    """UNet modules that get a LoRA (attention projections)."""
    num_tokens: int = 2
    """Number of learned text tokens ``<scene-i>``; 0 keeps the prompt template's text only."""
    token_learning_rate: float = 5e-3
    """Learning rate of the token embeddings."""
    token_init: str = "scene"
    """Word whose embedding initialises the new tokens."""
    prompt_template: str = "a photo of {tokens}"
    """Scene prompt; ``{tokens}`` becomes the learned tokens separated by spaces."""
    rectangles: tuple[int, int] = (1, 3)
    """Minimum and maximum number of masked rectangles per crop."""
    rectangle_size: tuple[float, float] = (0.15, 0.5)
    """Minimum and maximum rectangle side, as a fraction of the model resolution."""
    object_shaped_holes: float = 0.5
    """Probability that a crop also gets a hole shaped like a (random view's) dilated object
    mask, at a random place and scale ±20%: the shape the model fills at inference."""
    crop_scale: tuple[float, float] = (0.5, 1.0)
    """Minimum and maximum crop side, as a fraction of the shorter image side."""
    mask_object: bool = False
    """Also mask the object in the training conditioning (it is unknown there either way; when
    false the model sees it in the context, as in the plain rectangle task)."""
    warmup_steps: int = 20
    """Linear learning-rate warm-up; afterwards a cosine decay to 10% at the last step."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    checkpoint_every: int = 100
    """Write a resumable checkpoint every this many steps (and at the end)."""
    seed: int = 0
    """Seed of crops, rectangles, noise and timesteps (each step's from (seed, step))."""
    tiny_learning_rate: float = 1e-3
    """``tiny`` only: learning rate of the full UNet weights."""
    tiny_vae_steps: int = 300
    """``tiny`` only: VAE reconstruction steps before the UNet steps."""
    tiny_vae_learning_rate: float = 2e-3
    """``tiny`` only: learning rate of the VAE."""
    tiny_kl_weight: float = 1e-6
    """``tiny`` only: weight of the VAE's KL term."""

    def __post_init__(self) -> None:
        require(self.steps >= 1, "steps must be >= 1")
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(
            self.learning_rate > 0 and self.token_learning_rate > 0, "learning rates must be > 0"
        )
        require(
            self.tiny_learning_rate > 0 and self.tiny_vae_learning_rate > 0,
            "learning rates must be > 0",
        )
        require(
            self.lora_rank >= 1 and self.lora_alpha > 0, "lora_rank must be >= 1, lora_alpha > 0"
        )
        require(bool(self.target_modules), "target_modules must name at least one module")
        require(0 <= self.num_tokens <= 32, "num_tokens must be between 0 and 32")
        require(
            "{tokens}" in self.prompt_template or self.num_tokens == 0,
            "prompt_template must contain {tokens} when num_tokens > 0",
        )
        require(
            1 <= self.rectangles[0] <= self.rectangles[1],
            "rectangles must be (min, max) with 1 <= min <= max",
        )
        require(
            0 < self.rectangle_size[0] <= self.rectangle_size[1] <= 1,
            "rectangle_size must be (min, max) with 0 < min <= max <= 1",
        )
        require(
            0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
            "crop_scale must be (min, max) with 0 < min <= max <= 1",
        )
        require(0 <= self.object_shaped_holes <= 1, "object_shaped_holes must be in [0, 1]")
        require(
            self.warmup_steps >= 0 and self.max_grad_norm > 0,
            "warmup_steps >= 0, max_grad_norm > 0",
        )
        require(self.checkpoint_every >= 1, "checkpoint_every must be >= 1")
        require(self.tiny_vae_steps >= 1, "tiny_vae_steps must be >= 1")
        require(self.tiny_kl_weight >= 0, "tiny_kl_weight must be >= 0")

    @property
    def tokens(self) -> list[str]:
        return [f"<scene-{i}>" for i in range(self.num_tokens)]

    @property
    def prompt(self) -> str:
        return self.prompt_template.replace("{tokens}", " ".join(self.tokens)).strip()


# ---------------------------------------------------------------------------- data


@dataclass
class Batch:
    """One step's crops at model resolution (numpy, NHWC / NHW)."""

    images: np.ndarray  # (B, R, R, 3) float32 in [0, 1]
    objects: np.ndarray  # (B, R, R) bool, dilated object mask
    holes: np.ndarray  # (B, R, R) bool, the masked rectangles (and object-shaped holes)
    seed: int  # seed of this step's noise and timesteps


def object_shapes(views: list[TrainingView]) -> list[np.ndarray]:
    """Each view's dilated object mask cut to its bounding box (hole shapes for training)."""
    shapes = []
    for view in views:
        ys, xs = np.nonzero(view.mask)
        shapes.append(view.mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
    return shapes


def sample_batch(
    views: list[TrainingView],
    settings: CustomizeSettings,
    resolution: int,
    step: int,
    shapes: list[np.ndarray] | None = None,
) -> Batch:
    """The crops of ``step``: a pure function of (views, settings, resolution, step).

    ``shapes`` are the object-shaped holes to draw from (default: :func:`object_shapes`).
    """
    import cv2

    from .windows import Window, image_to_model, mask_to_model

    shapes = object_shapes(views) if shapes is None else shapes
    rng = np.random.default_rng([settings.seed, step])
    images, objects, holes = [], [], []
    for _ in range(settings.batch_size):
        view = views[int(rng.integers(len(views)))]
        height, width = view.image.shape[:2]
        short = min(height, width)
        side = int(round(rng.uniform(*settings.crop_scale) * short))
        side = min(max(side, resolution), short)
        window = Window(
            int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1)), side
        )
        images.append(image_to_model(view.image, window, resolution))
        objects.append(mask_to_model(view.mask, window, resolution))
        hole = np.zeros((resolution, resolution), np.uint8)
        for _ in range(int(rng.integers(settings.rectangles[0], settings.rectangles[1] + 1))):
            w, h = (max(1, round(rng.uniform(*settings.rectangle_size) * resolution)) for _ in "wh")
            x, y = (
                int(rng.integers(0, resolution - w + 1)),
                int(rng.integers(0, resolution - h + 1)),
            )
            cv2.rectangle(hole, (x, y), (x + w - 1, y + h - 1), 1, thickness=-1)
        if rng.random() < settings.object_shaped_holes:
            shape = shapes[int(rng.integers(len(shapes)))]
            scale = resolution / side * rng.uniform(0.8, 1.2)
            h = min(resolution, max(1, round(shape.shape[0] * scale)))
            w = min(resolution, max(1, round(shape.shape[1] * scale)))
            resized = cv2.resize(shape.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
            x, y = (
                int(rng.integers(0, resolution - w + 1)),
                int(rng.integers(0, resolution - h + 1)),
            )
            hole[y : y + h, x : x + w] |= resized
        holes.append(hole > 0)
    return Batch(np.stack(images), np.stack(objects), np.stack(holes), int(rng.integers(2**62)))


# ---------------------------------------------------------------------------- losses


def loss_weights(holes: torch.Tensor, objects: torch.Tensor, factor: int) -> torch.Tensor:
    """Per latent cell: 1 where it touches a hole and not the object mask, else 0.

    ``holes``/``objects``: float ``(B, 1, H, W)`` in {0, 1}; result ``(B, 1, H/f, W/f)``.
    """
    import torch.nn.functional as F

    return F.max_pool2d(holes, factor) * (1.0 - F.max_pool2d(objects, factor))


def encode(vae: Any, images: torch.Tensor) -> torch.Tensor:
    """Scaled latents (posterior mean) of images in [-1, 1], ``(B, 3, H, W)``."""
    return vae.encode(images.to(vae.dtype)).latent_dist.mode() * vae.config.scaling_factor


def inpainting_loss(
    unet: Any,
    vae: Any,
    scheduler: Any,
    text_embeddings: torch.Tensor,
    images: torch.Tensor,
    objects: torch.Tensor,
    holes: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    mask_object: bool = False,
) -> torch.Tensor:
    """Noise-prediction loss of the inpainting UNet on the masked holes, zero on the object.

    ``images`` float ``(B, 3, R, R)`` in [0, 1]; ``objects``/``holes`` float
    ``(B, 1, R, R)`` in {0, 1}; ``noise`` ``(B, 4, R/8, R/8)``; ``timesteps`` ``(B,)``. The
    conditioning follows the stock inpainting pipeline: mask (nearest-downsampled) and the
    latents of the image with the masked pixels set to 0 (mid grey).
    """
    import torch
    import torch.nn.functional as F

    pixels = images * 2.0 - 1.0
    masked_area = torch.maximum(holes, objects) if mask_object else holes
    with torch.no_grad():
        latents = encode(vae, pixels).float()
        masked_latents = encode(vae, pixels * (masked_area < 0.5)).float()
    mask_latent = F.interpolate(masked_area, size=latents.shape[-2:])
    noisy = scheduler.add_noise(latents, noise, timesteps)
    model_input = torch.cat([noisy, mask_latent, masked_latents], dim=1)
    prediction = unet(
        model_input.to(unet.dtype), timesteps, text_embeddings.to(unet.dtype)
    ).sample.float()
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    weights = loss_weights(holes, objects, images.shape[-1] // latents.shape[-1])
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

    Only pixels where ``known`` (``(B, 1, H, W)`` in {0, 1}) is 1 count: the object's pixels
    are left out, so the decoder learns the scene's background and not the object.
    """
    pixels = images * 2.0 - 1.0
    posterior = vae.encode(pixels).latent_dist
    reconstruction = vae.decode(posterior.sample(generator)).sample
    error = reconstruction - pixels
    count = (known.sum() * pixels.shape[1]).clamp_min(1.0)
    reconstruction_loss = ((error.abs() + error**2) * known).sum() / count
    return reconstruction_loss + kl_weight * posterior.kl().mean()


# ---------------------------------------------------------------------------- trainer


class Trainer:
    """The customisation model state: pipeline parts, trained parameters and optimizers."""

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
        self.shapes = object_shapes(views)
        self.tiny = diffusion.model.strip() == TINY
        self.device = resolve_device(diffusion)
        self.weight_dtype = torch.float32 if self.tiny else resolve_dtype(diffusion, self.device)
        if self.weight_dtype == torch.float16:
            log.warning("customize: float16 weights train without loss scaling; prefer bfloat16")
        pipeline = pipeline if pipeline is not None else load_base_pipeline(diffusion)
        self.resolution = model_resolution(diffusion, pipeline)
        self.factor = vae_scale_factor(pipeline)
        self.unet, self.vae = pipeline.unet, pipeline.vae
        self.text_encoder, self.tokenizer = pipeline.text_encoder, pipeline.tokenizer
        self.scheduler = pipeline.scheduler
        self.base_tokenizer = copy.deepcopy(self.tokenizer)
        self.base_vocab = len(self.tokenizer)
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
        self.base_unet = (
            [p for n, p in self.unet.named_parameters() if "lora_" not in n] if self.tiny else []
        )
        for p in self.base_unet:
            p.requires_grad_(True)
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
        if self.tiny:
            groups.append(
                {"params": self.base_unet, "lr": settings.tiny_learning_rate, "weight_decay": 0.0}
            )
        self.unet_params = [p for g in groups for p in g["params"]]
        self.optimizer = torch.optim.AdamW(groups)
        self.vae_optimizer = (
            torch.optim.AdamW(list(self.vae.parameters()), lr=settings.tiny_vae_learning_rate)
            if self.tiny
            else None
        )
        self.vae_steps = settings.tiny_vae_steps if self.tiny else 0
        self.total_steps = self.vae_steps + settings.steps
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
        names = {}
        for name, p in self.unet.named_parameters():
            if "lora_" in name or self.tiny:
                names[f"unet.{name}"] = p
        if self.tiny:
            names.update({f"vae.{n}": p for n, p in self.vae.named_parameters()})
        if self.token_ids:
            names["tokens"] = self.embedding[self.token_ids]
        return {k: v.detach().cpu().clone() for k, v in names.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "tensors": self.trained_tensors(),
            "optimizer": self.optimizer.state_dict(),
            "vae_optimizer": self.vae_optimizer.state_dict() if self.vae_optimizer else None,
            "losses": list(self.losses),
            "seconds": self.seconds,
            "scaling_factor": float(self.vae.config.scaling_factor),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        tensors = state["tensors"]
        with torch.no_grad():
            for name, p in self.unet.named_parameters():
                if f"unet.{name}" in tensors:
                    p.copy_(tensors[f"unet.{name}"])
            for name, p in self.vae.named_parameters():
                if f"vae.{name}" in tensors:
                    p.copy_(tensors[f"vae.{name}"])
            if self.token_ids:
                self.embedding[self.token_ids] = tensors["tokens"].to(self.embedding)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.vae_optimizer is not None and state["vae_optimizer"] is not None:
            self.vae_optimizer.load_state_dict(state["vae_optimizer"])
        self.losses = [float(x) for x in state["losses"]]
        self.seconds = float(state["seconds"])
        self.vae.register_to_config(scaling_factor=float(state["scaling_factor"]))

    # -- steps

    def lr_factor(self, step: int, steps: int) -> float:
        """Linear warm-up, then cosine decay from 1 to 0.1."""
        warmup = min(self.settings.warmup_steps, max(steps - 1, 0))
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(steps - warmup - 1, 1)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

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

    def vae_step(self, step: int) -> float:
        """One VAE reconstruction step (tiny only)."""
        import torch

        assert self.vae_optimizer is not None
        batch = sample_batch(self.views, self.settings, self.resolution, step, self.shapes)
        images, objects, masked_holes = self._tensors(batch)
        # Half the crops with masked areas set to grey: the VAE also encodes masked images.
        holes = torch.maximum(objects, masked_holes) if self.settings.mask_object else masked_holes
        masked = images * (holes < 0.5) + 0.5 * (holes >= 0.5)
        half = images.shape[0] // 2
        inputs = torch.cat([images[: images.shape[0] - half], masked[images.shape[0] - half :]])
        for group in self.vae_optimizer.param_groups:
            group["lr"] = self.settings.tiny_vae_learning_rate * self.lr_factor(
                step, self.vae_steps
            )
        generator = torch.Generator(self.device).manual_seed(batch.seed)
        self.vae.requires_grad_(True)
        self.vae.train()
        with self._autocast():
            loss = vae_loss(
                self.vae, inputs, 1.0 - objects, self.settings.tiny_kl_weight, generator
            )
        self.vae_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.vae.parameters(), self.settings.max_grad_norm)
        self.vae_optimizer.step()
        self.vae.eval()
        self.vae.requires_grad_(False)
        return float(loss.detach())

    def unet_step(self, step: int) -> float:
        """One LoRA/token (and for tiny, full UNet) step."""
        import torch

        local = step - self.vae_steps
        batch = sample_batch(self.views, self.settings, self.resolution, step, self.shapes)
        images, objects, holes = self._tensors(batch)
        generator = torch.Generator().manual_seed(batch.seed)
        latent = self.resolution // self.factor
        noise = torch.randn(images.shape[0], 4, latent, latent, generator=generator)
        timesteps = torch.randint(
            0, self.scheduler.config.num_train_timesteps, (images.shape[0],), generator=generator
        )
        factor = self.lr_factor(local, self.settings.steps)
        for group, base in zip(self.optimizer.param_groups, self._base_lrs()):
            group["lr"] = base * factor
        self.unet.train()
        with self._autocast():
            text = self.text_encoder(self.input_ids)[0].expand(images.shape[0], -1, -1)
            loss = inpainting_loss(
                self.unet,
                self.vae,
                self.scheduler,
                text,
                images,
                objects,
                holes,
                noise.to(self.device),
                timesteps.to(self.device),
                self.settings.mask_object,
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet_params, self.settings.max_grad_norm)
        self.optimizer.step()
        self.unet.eval()
        return float(loss.detach())

    def _base_lrs(self) -> list[float]:
        lrs = [self.settings.learning_rate]
        if self.token_ids:
            lrs.append(self.settings.token_learning_rate)
        if self.tiny:
            lrs.append(self.settings.tiny_learning_rate)
        return lrs

    def set_scaling_factor(self) -> None:
        """Tiny: scale latents to unit standard deviation (as SD's 0.18215 does)."""
        import torch

        batch = sample_batch(self.views, self.settings, self.resolution, SCALE_STEP, self.shapes)
        images, _, _ = self._tensors(batch)
        self.vae.register_to_config(scaling_factor=1.0)
        with torch.no_grad():
            std = float(encode(self.vae, images * 2.0 - 1.0).float().std())
        self.vae.register_to_config(scaling_factor=1.0 / max(std, 1e-6))
        log.info("tiny VAE latent scaling factor %.4f", self.vae.config.scaling_factor)

    def step(self, step: int) -> float:
        if step < self.vae_steps:
            loss = self.vae_step(step)
        else:
            if step == self.vae_steps and self.tiny:
                self.set_scaling_factor()
            loss = self.unet_step(step)
        if not math.isfinite(loss):
            raise UserError(
                f"customize: loss is {loss} at step {step}; lower customize.learning_rate "
                "(or tiny_learning_rate / tiny_vae_learning_rate)"
            )
        self.losses.append(loss)
        return loss

    # -- outputs

    def write(self, folder: Path, seconds: float, steps_run: int) -> dict[str, Any]:
        """Write the customisation files into ``folder``; returns the manifest."""
        import torch
        from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        lora_state = convert_state_dict_to_diffusers(get_peft_model_state_dict(self.unet))
        lora_state = {k: v.detach().float().cpu().contiguous() for k, v in lora_state.items()}
        StableDiffusionInpaintPipeline.save_lora_weights(
            folder,
            unet_lora_layers=lora_state,
            weight_name=LORA_FILE,
            unet_lora_adapter_metadata=self.unet.peft_config["default"].to_dict(),
        )
        tokens = self.settings.tokens
        embeddings = self.embedding.detach().float().cpu()
        save_file(
            {t: embeddings[i].clone().contiguous() for t, i in zip(tokens, self.token_ids)},
            folder / TOKENS_FILE,
        )
        if self.tiny:
            base_state = {
                k.replace(".base_layer.", "."): v
                for k, v in self.unet.state_dict().items()
                if "lora_" not in k
            }
            unet = UNet2DConditionModel.from_config(self.unet.config)
            unet.load_state_dict(base_state, strict=True)
            text_encoder = copy.deepcopy(self.text_encoder).cpu()
            text_encoder.resize_token_embeddings(self.base_vocab, mean_resizing=False)
            vae = move(copy.deepcopy(self.vae), torch.device("cpu"), torch.float32)
            base = _assemble(unet, vae, text_encoder, self.base_tokenizer, self.scheduler)
            base.save_pretrained(folder / BASE_DIR, safe_serialization=True)
        losses = self.losses[self.vae_steps :]
        manifest = {
            "base_model": self.diffusion.model.strip(),
            "tiny_seed": self.diffusion.tiny_seed if self.tiny else None,
            "resolution": self.resolution,
            "prompt": self.settings.prompt,
            "tokens": tokens,
            "trained": "unet+vae+lora+tokens" if self.tiny else "lora+tokens",
            "lora": {
                "rank": self.settings.lora_rank,
                "alpha": self.settings.lora_alpha,
                "target_modules": list(self.settings.target_modules),
            },
            "steps": self.settings.steps,
            "vae_steps": self.vae_steps,
            "views": [v.name for v in self.views],
            "final_loss": float(np.mean(losses[-max(1, len(losses) // 20) :])),
            "loss_curve": loss_summary(losses),
            "vae_final_loss": (
                float(np.mean(self.losses[max(0, self.vae_steps - 10) : self.vae_steps]))
                if self.vae_steps
                else None
            ),
            "seconds": round(seconds, 2),
            "steps_run_in_this_process": steps_run,
            "device": str(self.device),
            "dtype": str(self.weight_dtype).removeprefix("torch."),
            "settings": asdict(self.settings),
            "diffusion": asdict(self.diffusion),
        }
        atomic.write_json(folder / MANIFEST, manifest)
        atomic.write_text(folder / "README.md", readme(manifest))
        return manifest


def loss_summary(losses: list[float], points: int = 20) -> list[dict[str, float]]:
    """Mean loss over ``points`` equal windows of the run: ``[{"step", "loss"}, ...]``."""
    if not losses:
        return []
    edges = np.linspace(0, len(losses), min(points, len(losses)) + 1).astype(int)
    return [{"step": int(b), "loss": float(np.mean(losses[a:b]))} for a, b in zip(edges, edges[1:])]


def readme(manifest: dict[str, Any]) -> str:
    """How to use the customisation with stock diffusers (Markdown with a Python snippet).

    The snippet runs as written once ``<this folder>``, ``<image.png>`` and ``<mask.png>`` are
    replaced by paths; see :func:`readme_snippet`.
    """
    tiny = manifest["base_model"] == TINY
    tokens = ", ".join(manifest["tokens"]) or "(none)"
    lora = manifest["lora"]
    side = manifest["resolution"]
    return f"""# Scene customisation ({manifest["trained"]})

LoRA (rank {lora["rank"]}, alpha {lora["alpha"]}) on the UNet modules
{", ".join(lora["target_modules"])} and learned tokens {tokens}, trained {manifest["steps"]} steps
at {side}x{side} pixels on the scene's own views with a self-supervised inpainting loss.
Base model: `{manifest["base_model"]}`{" (its trained weights are in `base/`)" if tiny else ""}.

To use it in stock diffusers, replace `<this folder>` by the path of this folder and
`<image.png>`, `<mask.png>` by a view and its mask (white: the pixels to fill). The pipeline
resizes the whole view to {side}x{side}; the inpaint stage instead cuts a window around the mask.

```python
{readme_snippet(manifest)}```

`customization.json` records the settings, the loss curve and the time taken.
"""


def readme_snippet(manifest: dict[str, Any]) -> str:
    """Python code that loads the customisation in a stock diffusers pipeline and inpaints.

    The token lines appear only when the customisation has tokens (``load_textual_inversion``
    rejects an empty list).
    """
    base = (
        '(folder + "/base")' if manifest["base_model"] == TINY else f"({manifest['base_model']!r})"
    )
    lines = [
        "from diffusers import StableDiffusionInpaintPipeline",
        "from PIL import Image",
    ]
    if manifest["tokens"]:
        lines.append("from safetensors.torch import load_file")
    lines += [
        "",
        'folder = "<this folder>"',
        f"pipe = StableDiffusionInpaintPipeline.from_pretrained{base}",
        f'pipe.load_lora_weights(folder, weight_name="{LORA_FILE}")',
    ]
    if manifest["tokens"]:
        lines += [
            f'tokens = load_file(folder + "/{TOKENS_FILE}")',
            "pipe.load_textual_inversion(list(tokens.values()), token=list(tokens.keys()))",
        ]
    side = manifest["resolution"]
    lines += [
        'image = Image.open("<image.png>").convert("RGB")',
        'mask = Image.open("<mask.png>").convert("L")',
        f"result = pipe(prompt={manifest['prompt']!r}, image=image, mask_image=mask,",
        f"              height={side}, width={side}).images[0]",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- stage


def fingerprint(
    settings: CustomizeSettings, diffusion: DiffusionSettings, views: list[TrainingView]
) -> str:
    """Hash of everything that determines the trained weights (not checkpoint_every)."""
    digest = hashlib.sha256()
    settings_dict = {k: v for k, v in asdict(settings).items() if k != "checkpoint_every"}
    model = {k: asdict(diffusion)[k] for k in ("model", "tiny_seed", "resolution", "dtype")}
    digest.update(json.dumps([settings_dict, model], sort_keys=True, default=str).encode())
    for view in views:
        digest.update(view.name.encode())
        digest.update(np.ascontiguousarray(view.image).tobytes())
        digest.update(np.packbits(view.mask).tobytes())
    return digest.hexdigest()


def load_checkpoint(path: Path, expected: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists and matches ``expected``; else ``None``."""
    import torch

    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: start over
        log.warning("%s: unreadable checkpoint (%s); starting from step 0", path, exc)
        return None
    if state.get("fingerprint") != expected:
        log.warning("%s: checkpoint of other settings or inputs; starting from step 0", path)
        return None
    return state


def save_checkpoint(path: Path, trainer: Trainer, step: int, key: str) -> None:
    """Atomically write the training state after ``step`` steps."""
    state = {"fingerprint": key, "step": step, **trainer.state_dict()}
    atomic.write_torch(path, state)


def train(trainer: Trainer, resume_dir: Path, key: str, progress: bool = True) -> tuple[float, int]:
    """Run (or finish) the training loop; returns (seconds, steps run in this call)."""
    import torch
    from tqdm.auto import tqdm

    checkpoint = resume_dir / CHECKPOINT
    state = load_checkpoint(checkpoint, key)
    start = 0
    if state is not None:
        trainer.load_state_dict(state)
        start = int(state["step"])
        log.info(
            "customize: resuming from step %d of %d (%s)", start, trainer.total_steps, checkpoint
        )
    began, elapsed_before = time.perf_counter(), trainer.seconds
    every = trainer.settings.checkpoint_every
    bar = tqdm(
        total=trainer.total_steps,
        initial=start,
        desc="customize",
        unit="step",
        disable=not progress,
    )
    try:  # a failed step closes the progress bar before the error is printed
        smoothed = None
        for step in range(start, trainer.total_steps):
            try:
                with out_of_memory_hint(f"training customisation step {step}", OOM_HINT):
                    loss = trainer.step(step)
            except UserError as error:
                if (
                    "GPU out of memory" not in str(error)
                    or step != start
                    or trainer.diffusion.gradient_checkpointing
                    or not torch.cuda.is_available()
                ):
                    raise
                log.warning("customize: out of GPU memory; retrying with gradient checkpointing")
                trainer.diffusion.gradient_checkpointing = True
                trainer.unet.enable_gradient_checkpointing()
                with out_of_memory_hint(f"training customisation step {step}", OOM_HINT):
                    loss = trainer.step(step)
            smoothed = (
                loss
                if smoothed is None or step == trainer.vae_steps
                else 0.9 * smoothed + 0.1 * loss
            )
            phase = "vae" if step < trainer.vae_steps else "unet"
            bar.set_postfix(phase=phase, loss=f"{smoothed:.4f}", refresh=False)
            bar.update(1)
            done = step + 1
            if done % every == 0 or done == trainer.total_steps or interrupt.requested():
                trainer.seconds = elapsed_before + time.perf_counter() - began
                save_checkpoint(checkpoint, trainer, done, key)
            interrupt.check()  # after Ctrl-C or SIGTERM: stop, resumable from this step
    finally:
        bar.close()
    return trainer.seconds, trainer.total_steps - start


def run(
    settings: CustomizeSettings,
    diffusion: DiffusionSettings,
    transforms: Path,
    masks_dir: Path,
    output: Path,
    resume_dir: Path,
) -> None:
    """Train the scene customisation and write it to ``output`` (replaced atomically)."""
    pipeline = load_base_pipeline(diffusion)
    resolution = model_resolution(diffusion, pipeline)
    views = load_training_views(Path(transforms), Path(masks_dir), resolution)
    trainer = Trainer(settings, diffusion, views, pipeline)
    key = fingerprint(settings, diffusion, views)
    resume_dir = Path(resume_dir)
    resume_dir.mkdir(parents=True, exist_ok=True)
    log.info(
        "customize: %s on %d views at %dpx, %d steps%s, batch %d, on %s",
        diffusion.model,
        len(views),
        resolution,
        settings.steps,
        f" (+{trainer.vae_steps} VAE steps)" if trainer.vae_steps else "",
        settings.batch_size,
        trainer.device,
    )
    with interrupt.deferred():  # a signal stops training after a step (see maldnerf.interrupt)
        seconds, steps_run = train(trainer, resume_dir, key)
    with atomic.output_dir(output) as tmp:
        manifest = trainer.write(tmp, seconds, steps_run)
    log.info(
        "customize: final loss %.4f, %.1f s (%.2f steps/s); wrote %s",
        manifest["final_loss"],
        seconds,
        trainer.total_steps / max(seconds, 1e-9),
        output,
    )
