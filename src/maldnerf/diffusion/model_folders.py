"""The files of diffusion model folders: their names, their checks and their loading.

A base model is a diffusers folder (``model_index.json`` plus ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``) or a Hugging Face id; it must be an
*inpainting* model (a UNet with 9 input channels: 4 noisy latent, 1 mask, 4 masked-image
latent), and its weights are read from ``.safetensors`` files only (``use_safetensors=True``):
pickled ``.bin`` weights can run code when loaded, so a folder that has only those is rejected
with the way to convert it. A customisation folder (written by :mod:`.customize`) holds
:data:`MANIFEST`, :data:`LORA_FILE` and :data:`TOKENS_FILE`. Every problem is a one-line
:class:`UserError` naming the folder and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from diffusers import StableDiffusionInpaintPipeline

TINY = "tiny"
DEFAULT_MODEL = "stabilityai/stable-diffusion-2-inpainting"

# What the pretrain stage writes last into the tiny base's folder (see .pretrain).
PRETRAIN_MANIFEST = "pretrain.json"


def is_tiny_base(model: str) -> bool:
    """Whether ``model`` (a ``diffusion.model`` value) is the pretrained tiny base: ``tiny``, or
    a folder that the pretrain stage wrote (the workflow passes ``results/pretrain/tiny``)."""
    model = model.strip()
    return model == TINY or (Path(model).expanduser() / PRETRAIN_MANIFEST).is_file()


# Files of a customisation folder (written by .customize, read by .models).
MANIFEST = "customization.json"
LORA_FILE = "pytorch_lora_weights.safetensors"
TOKENS_FILE = "token_embeddings.safetensors"

# Weights load from safetensors only: the model parts checked, the pickled weight files that a
# folder may have instead, and how to convert those.
WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
SAFETENSORS_FIX = (
    "convert the model: load it with StableDiffusionInpaintPipeline.from_pretrained(..., "
    "use_safetensors=False) and re-save it with save_pretrained(folder, safe_serialization=True)"
)


def check_inpainting_folder(folder: Path, where: str) -> None:
    """Raise a :class:`UserError` unless ``folder`` holds a diffusers inpainting model."""
    if not (folder / "model_index.json").is_file():
        if (folder / MANIFEST).is_file():
            raise UserError(
                f"{where}: {folder} is a scene customisation (output of the customize stage), "
                "not a base model; set diffusion.model to the model it was trained on and pass "
                "the folder as the customisation"
            )
        raise UserError(
            f"{where}: {folder} is not a diffusers model folder (no model_index.json); save one "
            "with pipeline.save_pretrained(...), or use a Hugging Face id or 'tiny'"
        )
    unet_config = folder / "unet" / "config.json"
    if not unet_config.is_file():
        raise UserError(f"{where}: {folder} has no unet/config.json; it is not a diffusion model")
    try:
        config = json.loads(unet_config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{unet_config}: unreadable ({one_line(exc)}); the model folder is damaged, save "
            "or download it again"
        ) from None
    channels = config.get("in_channels") if isinstance(config, dict) else None
    check_channels(channels, str(folder), where)
    check_safetensors(folder, where)


def check_safetensors(folder: Path, where: str) -> None:
    """Raise a :class:`UserError` if a weight folder of ``folder`` has only pickled weights."""
    for component in WEIGHT_COMPONENTS:
        files = [f for f in (folder / component).glob("*") if f.is_file()]
        if any(f.suffix == ".safetensors" for f in files):
            continue
        pickled = sorted(f.name for f in files if f.suffix in PICKLE_SUFFIXES)
        if pickled:
            raise UserError(
                f"{where}: {folder / component} has only pickled weights ({pickled[0]}), and "
                f"weights are loaded from safetensors only; {SAFETENSORS_FIX}"
            )


def check_channels(channels: Any, source: str, where: str) -> None:
    if channels != 9:
        raise UserError(
            f"{where}: {source} has a UNet with {channels} input channels, not an inpainting "
            "model (9 channels); use an inpainting checkpoint such as "
            f"{DEFAULT_MODEL}, or 'tiny'"
        )


def load_folder(folder: Path, where: str) -> StableDiffusionInpaintPipeline:
    """Load a local diffusers inpainting folder (float32, CPU)."""
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline

    check_inpainting_folder(folder, where)
    try:
        pipeline = StableDiffusionInpaintPipeline.from_pretrained(
            folder,
            safety_checker=None,
            requires_safety_checker=False,
            local_files_only=True,
            use_safetensors=True,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if _missing_safetensors(exc):
            raise UserError(
                f"{where}: {folder} lacks safetensors weights ({one_line(exc, 100)}); "
                f"{SAFETENSORS_FIX}"
            ) from None
        raise UserError(
            f"{where}: cannot load the diffusers model in {folder} ({one_line(exc)})"
        ) from None
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def load_hub(model_id: str) -> StableDiffusionInpaintPipeline:
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "Couldn't connect to the Hub": said below if fatal
    try:
        pipeline = StableDiffusionInpaintPipeline.from_pretrained(
            model_id, safety_checker=None, requires_safety_checker=False, use_safetensors=True
        )
    except Exception as exc:  # hub errors come in many types (OSError, HTTP, validation)
        if isinstance(exc, MemoryError | KeyboardInterrupt):
            raise
        if _missing_safetensors(exc):
            raise UserError(
                f"diffusion.model: {model_id!r} has no safetensors weights (weights are loaded "
                f"from safetensors only); {SAFETENSORS_FIX}, and give that folder"
            ) from None
        raise UserError(
            f"diffusion.model: {model_id!r} is neither in the local Hugging Face cache nor "
            f"downloadable ({one_line(exc)}); download it where the hub is reachable, give a "
            "local diffusers folder, or use 'tiny'"
        ) from None
    finally:
        diffusers_logging.set_verbosity(verbosity)
    check_channels(pipeline.unet.config.in_channels, model_id, "diffusion.model")
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _missing_safetensors(exc: BaseException) -> bool:
    """Whether a diffusers loading error says that safetensors weight files are missing."""
    text = str(exc)
    return "necessary `safetensors` weights" in text or (
        "no file named" in text and ".safetensors" in text
    )


def one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
