"""The inpainting engine: :class:`Inpainter` inpaints a batch of views inside their masks, for
the ``inpaint`` stage (:mod:`.inpaint`) and the IDU re-inpainting of the NeRF stage.

Each view is cut to a square window around its mask and resized to the model resolution (see
:mod:`.windows`), inpainted, and pasted back inside the mask only, so pixels outside the mask
are exactly the input. Where the window overhangs the view, the model gets a grey border that
is part of its mask (inpainted, then discarded), never copies of the view's pixels.

``strength`` is the noise level ``t`` in (0, 1] (see :mod:`.schedule` for the mapping to
timesteps): ``t = 1`` inpaints from pure noise (the initial inpainting); ``t < 1`` encodes the
given image — for IDU, the original outside the mask and the NeRF render inside — noises it to
timestep ≈ ``t · T`` and runs ``ceil(t · num_steps)`` deterministic DDIM steps (η = 0) under the
inpainting conditioning (mask + latents of the image with the mask greyed out). The result
depends only on the inputs, ``strength`` and the view's seed, not on how views are batched
(up to floating-point reduction order on GPU).

Efficiency: views are processed ``batch_size`` at a time; the prompt embeddings are computed
once; the latents of each masked conditioning image are cached (keyed by its content), so
repeated IDU rounds over the same views only encode the renders. On CPU the same code runs in
float32.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..settings import require
from .model_folders import is_tiny_base
from .models import (
    TINY,
    DiffusionSettings,
    load_pipeline,
    model_resolution,
    native_resolution,
    out_of_memory_hint,
    resolve_device,
    vae_scale_factor,
)
from .objectives import latent_mask
from .schedule import check_strength, ddim_timesteps
from .views import check_view
from .windows import Window, image_to_model, mask_to_model, mask_window, paste

if TYPE_CHECKING:
    import torch


REAL_MODEL_GUIDANCE = 7.5
REAL_MODEL_NEGATIVE_PROMPT = "blurry, low quality, distorted, artifacts, text, watermark"
OOM_HINT = "lower inpaint.batch_size (the NeRF stage: its IDU batch size) or diffusion.resolution"


@dataclass
class InpaintSettings:
    """Settings of the inpainting (stage and IDU re-inpainting)."""

    num_steps: int = 20
    """DDIM steps of a full (t = 1) inpainting; a re-inpainting at level t runs ceil(t·num_steps)."""
    guidance_scale: float | None = None
    """Classifier-free guidance (> 1: a conditional and an unconditional UNet pass per step;
    1 disables it). ``None``: 1 for the tiny base (``tiny`` or its pretrained folder: trained
    with one caption and no unconditional examples, it has no unconditional branch to guide
    away from) and
    :data:`REAL_MODEL_GUIDANCE` for every other model (Stable Diffusion's own default)."""
    negative_prompt: str | None = None
    """Prompt guided away from when guidance is on. ``None``: :data:`REAL_MODEL_NEGATIVE_PROMPT`
    for real models, none for ``tiny``."""
    seed: int = 0
    """The stage inpaints training view i with seed ``seed + i``."""
    margin: float = 0.35
    """Context around the mask: the window is the mask's bounding box grown by this fraction of
    its longer side on every side (at least the model resolution, at most the image)."""
    batch_size: int = 8
    """Views per UNet batch."""
    cache_size: int = 4096
    """Number of encoded conditioning images kept in memory (one per view is enough for IDU)."""

    def __post_init__(self) -> None:
        require(1 <= self.num_steps <= 1000, "num_steps must be between 1 and 1000")
        require(
            self.guidance_scale is None or self.guidance_scale >= 1.0,
            "guidance_scale must be >= 1 (1 disables guidance) or null (by model)",
        )
        require(0.0 <= self.margin <= 4.0, "margin must be between 0 and 4")
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(self.cache_size >= 0, "cache_size must be >= 0")

    def for_model(self, model: str) -> InpaintSettings:
        """These settings with the guidance and negative prompt of ``model`` filled in where
        they are ``None`` (see :attr:`guidance_scale`)."""
        real = not is_tiny_base(model)
        guidance = self.guidance_scale
        if guidance is None:
            guidance = REAL_MODEL_GUIDANCE if real else 1.0
        negative = self.negative_prompt
        if negative is None:
            negative = REAL_MODEL_NEGATIVE_PROMPT if real else ""
        return replace(self, guidance_scale=guidance, negative_prompt=negative)


class Inpainter:
    """Batched, deterministic inpainting and partial-DDIM re-inpainting of views."""

    def __init__(
        self,
        pipeline: Any,
        prompt: str,
        settings: InpaintSettings,
        device: torch.device | str,
        resolution: int | None = None,
    ) -> None:
        import torch

        if settings.guidance_scale is None or settings.negative_prompt is None:
            settings = settings.for_model(TINY)  # see load_inpainter for the model's own
        self.pipeline, self.prompt, self.settings = pipeline, prompt, settings
        self.device = torch.device(device)
        self.unet, self.vae = pipeline.unet, pipeline.vae
        self.dtype = self.unet.dtype
        self.resolution = resolution or native_resolution(pipeline)
        self.factor = vae_scale_factor(pipeline)
        self.latent_channels = int(self.vae.config.latent_channels)
        scheduler = pipeline.scheduler
        self.alphas = scheduler.alphas_cumprod.double().tolist()
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.prediction_type = scheduler.config.get("prediction_type", "epsilon")
        self.guided = settings.guidance_scale > 1.0
        with torch.inference_mode():
            positive, negative = pipeline.encode_prompt(
                prompt,
                self.device,
                1,
                self.guided,
                settings.negative_prompt if self.guided else None,
            )
        self.text = (torch.cat([negative, positive]) if self.guided else positive).to(self.dtype)
        self._cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.show_progress = False

    def window(self, mask: np.ndarray) -> Window:
        """The window in which ``mask`` is inpainted."""
        return mask_window(mask, self.resolution, self.settings.margin)

    def inpaint(
        self,
        images: list[np.ndarray],
        masks: list[np.ndarray],
        strength: float = 1.0,
        seeds: list[int] | None = None,
    ) -> list[np.ndarray]:
        """Inpaint ``images`` (float32 ``(H, W, 3)`` in [0, 1]) inside ``masks`` (bool ``(H, W)``).

        ``strength`` is the noise level t in (0, 1]; ``seeds`` one per view (default
        ``settings.seed + i``). Returns new arrays equal to the inputs outside the masks.
        """
        from tqdm.auto import tqdm

        check_strength(strength)
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        seeds = (
            list(seeds)
            if seeds is not None
            else [self.settings.seed + i for i in range(len(images))]
        )
        if len(seeds) != len(images):
            raise ValueError(f"{len(images)} images but {len(seeds)} seeds")
        images = [np.asarray(image) for image in images]
        masks = [np.asarray(mask, dtype=bool) for mask in masks]
        for index, (image, mask) in enumerate(zip(images, masks)):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {index} has shape {image.shape}, expected (H, W, 3)")
            check_view(str(index), image, mask, self.resolution)
        results: list[np.ndarray] = []
        size = self.settings.batch_size
        batches = range(0, len(images), size)
        # As a context: a failed batch closes the bar before the error is printed.
        with tqdm(batches, desc="inpaint", unit="batch", disable=not self.show_progress) as bar:
            for start in bar:
                stop = start + size
                with out_of_memory_hint(
                    f"inpainting {len(images[start:stop])} views at {self.resolution} px", OOM_HINT
                ):
                    results += self._batch(
                        images[start:stop], masks[start:stop], strength, seeds[start:stop]
                    )
        return results

    def _batch(
        self, images: list[np.ndarray], masks: list[np.ndarray], strength: float, seeds: list[int]
    ) -> list[np.ndarray]:
        import torch

        windows = [self.window(mask) for mask in masks]
        pixels = np.stack([image_to_model(i, w, self.resolution) for i, w in zip(images, windows)])
        model_masks = np.stack(
            [mask_to_model(m, w, self.resolution) for m, w in zip(masks, windows)]
        )
        with torch.inference_mode():
            x = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(self.device).clamp(0, 1) * 2 - 1
            m = torch.from_numpy(model_masks).float()[:, None].to(self.device)
            conditioning = self._masked_latents(pixels, model_masks, x, m)
            size = self.resolution // self.factor
            mask_latent = latent_mask(m, self.factor).to(self.dtype)  # as in training
            noise = torch.stack(
                [
                    torch.randn(
                        self.latent_channels,
                        size,
                        size,
                        generator=torch.Generator().manual_seed(int(s)),
                    )
                    for s in seeds
                ]
            ).to(self.device)
            timesteps = ddim_timesteps(strength, self.settings.num_steps, self.num_train_timesteps)
            if strength >= 1.0:
                latents = noise
            else:
                alpha = self.alphas[timesteps[0]]
                start = self._encode(x)
                latents = math.sqrt(alpha) * start + math.sqrt(1.0 - alpha) * noise
            latents = self._denoise(latents, mask_latent, conditioning, timesteps)
            decoded = self.vae.decode((latents / self.vae.config.scaling_factor).to(self.dtype))
            out = ((decoded.sample.float() + 1.0) / 2.0).clamp(0.0, 1.0)
            patches = out.permute(0, 2, 3, 1).cpu().numpy()
        return [paste(i, m, w, p) for i, m, w, p in zip(images, masks, windows, patches)]

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled latents (posterior mean) of pixels in [-1, 1], float32."""
        posterior = self.vae.encode(x.to(self.dtype)).latent_dist
        return posterior.mode().float() * self.vae.config.scaling_factor

    def _masked_latents(
        self, pixels: np.ndarray, masks: np.ndarray, x: torch.Tensor, m: torch.Tensor
    ) -> torch.Tensor:
        """Latents of the conditioning images (masked pixels grey), from the cache when known."""
        import torch

        keys = []
        for image, mask in zip(pixels, masks):
            digest = hashlib.blake2b(digest_size=20)
            digest.update(np.where(mask[..., None], 0.0, image).astype(np.float32).tobytes())
            digest.update(np.packbits(mask).tobytes())
            keys.append(digest.digest())
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        fresh: dict[int, torch.Tensor] = {}
        if missing:
            index = torch.tensor(missing, device=self.device)
            masked = x[index] * (m[index] < 0.5)
            for i, latent in zip(missing, self._encode(masked)):
                fresh[i] = latent
                if self.settings.cache_size:
                    self._cache[keys[i]] = latent
        for key in keys:
            if key in self._cache:
                self._cache.move_to_end(key)
        while len(self._cache) > self.settings.cache_size:
            self._cache.popitem(last=False)
        latents = [fresh[i] if i in fresh else self._cache[key] for i, key in enumerate(keys)]
        return torch.stack(latents).to(self.dtype)

    def _denoise(
        self,
        latents: torch.Tensor,
        mask_latent: torch.Tensor,
        conditioning: torch.Tensor,
        timesteps: list[int],
    ) -> torch.Tensor:
        """Deterministic DDIM (η = 0) through ``timesteps``, then to the clean latent."""
        import torch

        count = latents.shape[0]
        text = (
            self.text.repeat_interleave(count, dim=0)
            if self.guided
            else self.text.expand(count, -1, -1)
        )
        for i, timestep in enumerate(timesteps):
            model_input = torch.cat([latents.to(self.dtype), mask_latent, conditioning], dim=1)
            if self.guided:
                model_input = torch.cat([model_input, model_input])
            t = torch.full((model_input.shape[0],), timestep, device=self.device, dtype=torch.long)
            output = self.unet(model_input, t, text).sample.float()
            if self.guided:
                unconditional, conditional = output.chunk(2)
                output = unconditional + self.settings.guidance_scale * (
                    conditional - unconditional
                )
            alpha = self.alphas[timestep]
            alpha_next = self.alphas[timesteps[i + 1]] if i + 1 < len(timesteps) else 1.0
            if self.prediction_type == "v_prediction":
                clean = math.sqrt(alpha) * latents - math.sqrt(1 - alpha) * output
                eps = math.sqrt(alpha) * output + math.sqrt(1 - alpha) * latents
            else:
                eps = output
                clean = (latents - math.sqrt(1 - alpha) * eps) / math.sqrt(alpha)
            latents = math.sqrt(alpha_next) * clean + math.sqrt(1 - alpha_next) * eps
        return latents


def load_inpainter(
    diffusion: DiffusionSettings, inpaint: InpaintSettings, customization_dir: Path | None
) -> Inpainter:
    """An :class:`Inpainter` for the model of ``diffusion`` (+ the customisation, if given)."""
    pipeline, prompt = load_pipeline(diffusion, customization_dir)
    return Inpainter(
        pipeline,
        prompt,
        inpaint.for_model(diffusion.model),
        resolve_device(diffusion),
        resolution=model_resolution(diffusion, pipeline),
    )
