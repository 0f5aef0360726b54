"""The ``pretrain`` stage: train the generic tiny base model that the embedded default customises.

Real runs start from Stable Diffusion 2 inpainting, a model pretrained on billions of images and
customised to the scene by a LoRA and learned tokens. The CPU-sized default does the same at a
small scale: this stage trains the ``tiny`` inpainting model (UNet and VAE of the Stable
Diffusion inpainting architecture at small widths, the frozen tiny CLIP text encoder and its
tokenizer) from random weights on procedurally generated rooms (:mod:`.pretrain_data`), never on
the evaluation scene. Two phases, as Stable Diffusion was built (:mod:`.pretrain_trainer`):

1. the VAE alone (``vae_steps``): L1 + L2 reconstruction of crops, half of them with their holes
   greyed out as the inpainting conditioning shows them, plus a small KL term; then the latent
   scaling factor is set to 1/std of the latents (Stable Diffusion's 0.18215 plays that role);
2. the UNet (``unet_steps``) with the standard inpainting objective: noise prediction on the
   whole latent, conditioned on the mask and the latents of the masked crop, with one generic
   caption (``caption``).

Every step's crops, noise and timesteps derive from ``(seed, phase, step)``, and the initial
weights from ``seed``: the result is a function of the settings (on one device).

Output folder (``results/pretrain/tiny/`` in the workflow), loadable by
``StableDiffusionInpaintPipeline.from_pretrained`` and by ``diffusion.model: <folder>``::

    model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/   (safetensors)
    pretrain.json        settings, cache key, caption, times, held-out scores (see .pretrain_eval)
    pretrain_log.csv     step, phase (vae | unet), loss, learning rate, seconds since the start
    contact_sheet.png    held-out views: input | random init | pretrained | true background

The folder is built once per machine: it is kept in a cache (``$MALDNERF_CACHE``, else
``$XDG_CACHE_HOME/maldnerf``, else ``~/.cache/maldnerf``) under a key that digests the settings
and the code of this stage; a later run with the same key copies it from there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import atomic
from ..errors import UserError
from ..settings import require, to_dict
from .holes import HoleSettings
from .model_folders import PRETRAIN_MANIFEST
from .pretrain_data import render_rooms

log = logging.getLogger(__name__)

MANIFEST = PRETRAIN_MANIFEST
LOG = "pretrain_log.csv"
SHEET = "contact_sheet.png"


@dataclass
class PretrainSettings:
    """Settings of the pretrain stage (the tiny base model of the embedded default)."""

    seed: int = 0
    """Seed of the rooms, the initial weights, and every step's crops, noise and timesteps."""
    rooms: int = 48
    """Random rooms rendered for training."""
    views_per_room: int = 4
    """Views rendered per room (with and without its object)."""
    held_out_rooms: int = 4
    """Further rooms, never trained on, whose views score the model (``pretrain.json``)."""
    width: int = 160
    """Width of the rendered views in pixels."""
    height: int = 120
    """Height of the rendered views in pixels."""
    fov_degrees: float = 60.0
    """Horizontal field of view of the rendered views."""
    caption: str = "a photo of the scene"
    """The caption of every training crop (``diffusion.generic_prompt`` is the same text)."""
    vae_steps: int = 300
    """VAE training steps (phase 1)."""
    unet_steps: int = 800
    """UNet training steps (phase 2)."""
    batch_size: int = 16
    """Crops per step."""
    vae_learning_rate: float = 2e-3
    """AdamW learning rate of the VAE."""
    unet_learning_rate: float = 1e-3
    """AdamW learning rate of the UNet."""
    kl_weight: float = 1e-6
    """Weight of the VAE's KL term."""
    warmup_steps: int = 20
    """Linear learning-rate warm-up of each phase; then a cosine decay to 10%."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    """What the UNet predicts: the noise (Stable Diffusion 1/2 inpainting) or the velocity
    (Stable Diffusion 2's 768 px models); written into the model's scheduler config."""
    hole_loss_weight: float = 1.0
    """Weight of the latent cells under a hole in the noise-prediction loss, relative to the
    others (1: the standard objective, every cell alike)."""
    object_removal: float = 0.5
    """Fraction of crops that are object-removal examples (the view without its object, the
    dilated object mask as the hole); the rest have random holes."""
    rectangles: tuple[int, int] = (1, 3)
    """Random-hole crops: minimum and maximum number of masked rectangles."""
    rectangle_size: tuple[float, float] = (0.15, 0.5)
    """Random-hole crops: rectangle side range, as a fraction of the model resolution."""
    object_shaped_holes: float = 0.5
    """Random-hole crops: probability of one more hole shaped like an object mask."""
    crop_scale: tuple[float, float] = (0.5, 1.0)
    """Random-hole crops: crop side range, as a fraction of the shorter image side."""
    evaluation_steps: int = 20
    """DDIM steps of the held-out evaluation's inpaintings."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""

    def __post_init__(self) -> None:
        require(self.rooms >= 1 and self.views_per_room >= 1, "rooms and views_per_room >= 1")
        require(self.held_out_rooms >= 1, "held_out_rooms must be >= 1")
        require(self.width >= 64 and self.height >= 64, "width and height must be >= 64 pixels")
        require(10.0 <= self.fov_degrees <= 120.0, "fov_degrees must be in [10, 120]")
        require(bool(self.caption.strip()), "caption must not be empty")
        require(self.vae_steps >= 1 and self.unet_steps >= 1, "vae_steps and unet_steps >= 1")
        require(self.batch_size >= 2, "batch_size must be >= 2")
        require(
            self.vae_learning_rate > 0 and self.unet_learning_rate > 0, "learning rates must be > 0"
        )
        require(self.kl_weight >= 0 and self.max_grad_norm > 0, "kl_weight >= 0, max_grad_norm > 0")
        require(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        require(self.hole_loss_weight >= 1, "hole_loss_weight must be >= 1")
        require(0 <= self.object_removal <= 1, "object_removal must be in [0, 1]")
        _ = self.holes  # building the HoleSettings checks the hole fields
        require(self.evaluation_steps >= 1, "evaluation_steps must be >= 1")

    @property
    def holes(self) -> HoleSettings:
        return HoleSettings(
            tuple(self.rectangles),
            tuple(self.rectangle_size),
            self.object_shaped_holes,
            tuple(self.crop_scale),
        )


# ---------------------------------------------------------------------------- cache


def cache_root() -> Path:
    """Where built base models are kept: ``$MALDNERF_CACHE``, ``$XDG_CACHE_HOME/maldnerf`` or
    ``~/.cache/maldnerf``."""
    if os.environ.get("MALDNERF_CACHE"):
        return Path(os.environ["MALDNERF_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "maldnerf"


def cache_key(settings: PretrainSettings) -> str:
    """Digest (16 hex characters) of the settings and of the code this stage runs."""
    import torch

    from ..code_version import stage_digest

    data = {
        "settings": to_dict(settings),
        "code": stage_digest("pretrain"),
        "torch": ".".join(torch.__version__.split(".")[:2]),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def cached_folder(settings: PretrainSettings) -> Path:
    return cache_root() / f"tiny-{cache_key(settings)}"


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a whole pretrained model (the manifest is written last)."""
    return (folder / MANIFEST).is_file() and (folder / "model_index.json").is_file()


def cached_default_base() -> Path:
    """The cached tiny base of the default settings (``diffusion.model: tiny`` outside the
    workflow); a :class:`UserError` when it has not been built on this machine."""
    folder = cached_folder(PretrainSettings())
    if not is_complete(folder):
        raise UserError(
            f"diffusion.model: 'tiny' is the pretrained tiny base, not built on this machine yet "
            f"({folder}); build it with `maldnerf pretrain --output <folder>` (a few minutes) or "
            "let the workflow's pretrain rule build it, or give a model folder"
        )
    return folder


# ---------------------------------------------------------------------------- stage


def train_base(settings: PretrainSettings, output: Path, workers: int) -> dict[str, Any]:
    """Render the rooms, train, score on the held-out rooms and write ``output`` atomically."""
    from ..devices import resolve_device
    from .pretrain_eval import evaluate
    from .pretrain_trainer import PretrainTrainer, write_log

    device = resolve_device(settings.device, "pretrain.device")
    began = time.perf_counter()
    size = (settings.width, settings.height)
    rooms = render_rooms(
        settings.seed,
        range(settings.rooms),
        settings.views_per_room,
        size,
        settings.fov_degrees,
        workers,
    )
    held_out = render_rooms(
        settings.seed,
        range(settings.rooms, settings.rooms + settings.held_out_rooms),
        settings.views_per_room,
        size,
        settings.fov_degrees,
        workers,
    )
    render_seconds = time.perf_counter() - began
    log.info(
        "pretrain: rendered %d + %d views in %.1f s", len(rooms), len(held_out), render_seconds
    )
    trainer = PretrainTrainer(settings, rooms, device)
    trainer.train_vae()
    vae_seconds = time.perf_counter() - trainer.began
    log.info("pretrain: VAE %d steps in %.1f s", settings.vae_steps, vae_seconds)
    trainer.train_unet()
    unet_seconds = time.perf_counter() - trainer.began - vae_seconds
    log.info("pretrain: UNet %d steps in %.1f s", settings.unet_steps, unet_seconds)
    with atomic.output_dir(output) as tmp:
        trainer.pipeline.to("cpu").save_pretrained(tmp, safe_serialization=True)
        write_log(tmp / LOG, trainer.log)
        evaluation_began = time.perf_counter()
        scores = evaluate(trainer.pipeline, held_out, settings, device, tmp / SHEET)
        manifest = {
            "key": cache_key(settings),
            "caption": settings.caption,
            "resolution": trainer.resolution,
            "training_views": len(rooms),
            "held_out_views": len(held_out),
            "seconds": {
                "render": round(render_seconds, 1),
                "vae": round(vae_seconds, 1),
                "unet": round(unet_seconds, 1),
                "evaluation": round(time.perf_counter() - evaluation_began, 1),
                "total": round(time.perf_counter() - began, 1),
                "cpu_of_this_process": round(time.process_time(), 1),
            },
            "final_loss": {
                phase: float(np.mean([r["loss"] for r in trainer.log if r["phase"] == phase][-20:]))
                for phase in ("vae", "unet")
            },
            "held_out": scores,
            "device": str(device),
            "settings": asdict(settings),
        }
        atomic.write_json(tmp / MANIFEST, manifest)  # last: marks the folder complete
    return manifest


def run(settings: PretrainSettings, output: Path, workers: int = 1, use_cache: bool = True) -> None:
    """Build the tiny base into ``output``: copied from the cache when built before, else
    trained (and then cached)."""
    output = Path(output)
    cached = cached_folder(settings)
    if use_cache and is_complete(cached):
        log.info("pretrain: using the cached base model %s", cached)
        with atomic.output_dir(output) as tmp:
            shutil.copytree(cached, tmp, dirs_exist_ok=True)
        return
    manifest = train_base(settings, output, workers)
    scores = manifest["held_out"]["masked_psnr_db"]
    log.info(
        "pretrain: held-out masked PSNR %.2f dB (random init %.2f, flat fill %.2f, Telea %.2f); "
        "%.1f s; wrote %s",
        scores["pretrained"],
        scores["random_init"],
        scores["flat_fill"],
        scores["telea"],
        manifest["seconds"]["total"],
        output,
    )
    if use_cache:
        try:
            with atomic.output_dir(cached) as tmp:
                shutil.copytree(output, tmp, dirs_exist_ok=True)
        except OSError as exc:  # a read-only or full cache only costs the next run the training
            log.warning("pretrain: could not cache the model in %s (%s)", cached, exc)
