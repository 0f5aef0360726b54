"""Stable-Diffusion inpainting models: where they come from and how a customisation is applied.

A model (``diffusion.model``) is one of

- a Hugging Face id (default for real runs: ``stabilityai/stable-diffusion-2-inpainting``),
  loaded from the local Hugging Face cache, or downloaded when the hub is reachable;
- a local diffusers folder (``model_index.json`` plus ``unet/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/``, ``scheduler/``);
- ``tiny``: the pretrained tiny base — the same architecture family (a 9-channel inpainting
  ``UNet2DConditionModel``, an ``AutoencoderKL`` with four down blocks: Stable Diffusion's 8×
  latent downscale, a CLIP text encoder) at small widths, trained by the ``pretrain`` stage on
  procedurally generated rooms (:mod:`.pretrain`). The workflow passes its folder
  (``results/pretrain/tiny``) as a local model; ``tiny`` given directly to a stage's command
  loads the copy of the default pretraining in the machine's cache. It exists for the embedded
  CPU-sized default and for tests; nothing of it is downloaded (:mod:`.architectures`).

Every model must be an *inpainting* model read from safetensors weights; the checks and the
loading of folders and hub ids are in :mod:`.model_folders`.

A customisation folder (see :mod:`.customize`) adds a LoRA on the UNet's attention projections
and learned token embeddings; :func:`load_pipeline` loads them with the stock diffusers calls
(``load_lora_weights``, ``load_textual_inversion``) and returns the scene prompt.

Precision and device: ``auto`` picks CUDA when present, ``cuda:N`` GPU number N; weights are
bf16 on GPUs that support it (fp16 otherwise) and fp32 on CPU. Attention runs through PyTorch's
scaled-dot-product attention (diffusers' default processor); attention slicing and gradient
checkpointing are switches for tight memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import OutOfMemory, UserError
from ..settings import require
from .model_folders import (
    LORA_FILE,
    MANIFEST,
    TINY,
    TOKENS_FILE,
    load_folder,
    load_hub,
    one_line,
)

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionInpaintPipeline

log = logging.getLogger(__name__)


# Values of diffusion.device.
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass
class DiffusionSettings:
    """Which diffusion model to use, and where and how to run it."""

    model: str = TINY
    """Hugging Face id (e.g. ``stabilityai/stable-diffusion-2-inpainting``), local diffusers
    folder, or ``tiny`` (the small base model that the ``pretrain`` stage trains offline on
    generated rooms, for CPU runs and tests)."""
    resolution: int | None = None
    """Model input size in pixels (square, a multiple of 8); ``null``: the model's native size
    (64 for ``tiny``, 512 for Stable Diffusion 2 inpainting)."""
    device: str = "auto"
    """``auto`` (CUDA when available, otherwise the CPU), ``cpu``, ``cuda`` (the current GPU)
    or ``cuda:N`` (GPU number N)."""
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    """Weight precision; ``auto``: bfloat16 on GPUs that support it (float16 otherwise), float32
    on the CPU. Trained parameters (LoRA, tokens) always stay float32."""
    attention_slicing: bool = False
    """Compute attention in slices (less memory, slower)."""
    gradient_checkpointing: bool = False
    """Recompute UNet activations in the backward pass (less memory, ~30% slower training).
    When off, the customize stage still turns it on by itself if the first step runs out of GPU
    memory."""
    generic_prompt: str = "a photo of the scene"
    """Prompt used without a customisation (the ``no customisation`` ablation); the tiny base
    was pretrained with this caption."""

    def __post_init__(self) -> None:
        require(bool(self.model.strip()), "model must not be empty")
        require(
            isinstance(self.device, str) and DEVICE_PATTERN.fullmatch(self.device) is not None,
            f"device must be auto, cpu, cuda or cuda:N (N a GPU number, e.g. cuda:1), "
            f"not {self.device!r}",
        )
        require(
            self.resolution is None or (self.resolution >= 32 and self.resolution % 8 == 0),
            "resolution must be a multiple of 8 and >= 32 (or null for the model's native size)",
        )


# ---------------------------------------------------------------------------- device, dtype


def resolve_device(settings: DiffusionSettings) -> torch.device:
    """The torch device named by ``settings.device``; a GPU number that does not exist is a
    :class:`UserError`."""
    import torch

    from ..devices import resolve_device as resolve

    device = resolve(settings.device, "diffusion.device")
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise UserError(
                f"diffusion.device: {settings.device} requested but there are only {count} CUDA "
                f"device(s) (cuda:0 to cuda:{count - 1}); use auto, cuda or a listed number"
            )
    return device


def resolve_dtype(settings: DiffusionSettings, device: torch.device) -> torch.dtype:
    """The weight dtype named by ``settings.dtype`` on ``device``."""
    import torch

    if settings.dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        with torch.cuda.device(device):  # the GPU in use, not cuda:0
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if settings.dtype == "float16" and device.type == "cpu":
        raise UserError(
            "diffusion.dtype: float16 is not supported on the CPU; use 'auto', 'float32' "
            "or 'bfloat16'"
        )
    return getattr(torch, settings.dtype)


def native_resolution(pipeline: StableDiffusionInpaintPipeline) -> int:
    """The model's training resolution in pixels (UNet sample size × VAE downscale)."""
    return int(pipeline.unet.config.sample_size) * vae_scale_factor(pipeline)


def vae_scale_factor(pipeline: StableDiffusionInpaintPipeline) -> int:
    return 2 ** (len(pipeline.vae.config.block_out_channels) - 1)


def model_resolution(settings: DiffusionSettings, pipeline: StableDiffusionInpaintPipeline) -> int:
    """``settings.resolution`` or, when unset, the model's native resolution."""
    resolution = settings.resolution or native_resolution(pipeline)
    factor = vae_scale_factor(pipeline)
    if resolution % factor:
        raise UserError(
            f"diffusion.resolution: {resolution} is not a multiple of the VAE downscale {factor}"
        )
    return resolution


@contextlib.contextmanager
def out_of_memory_hint(what: str, hint: str) -> Iterator[None]:
    """Turn a GPU out-of-memory error inside the block into a one-line :class:`UserError`."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError:
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()
        raise OutOfMemory(f"GPU out of memory while {what}; {hint}") from None


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1)


def load_base_pipeline(settings: DiffusionSettings) -> StableDiffusionInpaintPipeline:
    """The base model of ``settings`` in float32 on the CPU (move it with :func:`place`)."""
    model = settings.model.strip()
    if model == TINY:
        from .pretrain import cached_default_base

        return load_folder(cached_default_base(), where="diffusion.model")
    folder = Path(model).expanduser()
    if folder.is_dir():
        return load_folder(folder, where="diffusion.model")
    if _looks_like_path(model):
        raise UserError(
            f"diffusion.model: folder {model} not found; give an existing diffusers folder, "
            "a Hugging Face id, or 'tiny'"
        )
    return load_hub(model)


def place(
    pipeline: StableDiffusionInpaintPipeline, settings: DiffusionSettings, device: torch.device
) -> StableDiffusionInpaintPipeline:
    """Move ``pipeline`` to ``device`` in the settings' dtype, in eval mode, memory switches on."""
    dtype = resolve_dtype(settings, device)
    for module in (pipeline.unet, pipeline.vae, pipeline.text_encoder):
        move(module, device, dtype)
        module.eval()
        module.requires_grad_(False)
    if settings.attention_slicing:
        pipeline.enable_attention_slicing()
    return pipeline


def read_customization(folder: Path) -> dict[str, Any]:
    """The manifest of a customisation folder, checked for the files it names."""
    manifest = folder / MANIFEST
    if not folder.is_dir():
        raise UserError(
            f"{folder}: customisation folder not found; run the customize stage first, or pass "
            "'none' for the base model"
        )
    if not manifest.is_file():
        raise UserError(
            f"{folder}: not a customisation folder (no {MANIFEST}); pass the customize stage's "
            "output folder, or 'none' for the base model"
        )
    try:
        info = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{manifest}: unreadable ({one_line(exc)}); rerun customize") from None
    for name in (LORA_FILE, TOKENS_FILE):
        if not (folder / name).is_file():
            raise UserError(f"{folder / name}: missing; rerun the customize stage")
    return info


def check_customization_base(
    folder: Path, info: dict[str, Any], settings: DiffusionSettings
) -> None:
    """Raise a :class:`UserError` unless the customisation was trained on ``settings.model``."""
    if info.get("base_model") != settings.model.strip():
        raise UserError(
            f"{folder / MANIFEST}: trained on base model {info.get('base_model')!r} but "
            f"diffusion.model is {settings.model!r}; rerun customize or change diffusion.model"
        )


def model_identity(settings: DiffusionSettings) -> str:
    """What identifies the weights of ``settings.model``, for resume fingerprints.

    A folder written by the pretrain stage: its cache key (a digest of its settings and code);
    ``tiny``: the key of the default pretraining. Another local folder: a digest of its
    JSON/text files and of its weight files' names, sizes and modification times (hashing
    gigabytes of weights at every start would cost more than it protects). A hub id: the id.
    """
    import hashlib

    model = settings.model.strip()
    if model == TINY:
        from .pretrain import PretrainSettings, cache_key

        return "pretrain:" + cache_key(PretrainSettings())
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return model
    manifest = folder / "pretrain.json"
    if manifest.is_file():
        return "pretrain:" + str(json.loads(manifest.read_text()).get("key"))
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        if path.suffix in (".json", ".txt"):
            digest.update(path.read_bytes())
        else:
            stat = path.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return "folder:" + digest.hexdigest()


def apply_customization(pipeline: StableDiffusionInpaintPipeline, folder: Path) -> str:
    """Load the LoRA and token embeddings of ``folder`` into ``pipeline``; returns the prompt.

    Uses only stock diffusers loaders (``load_lora_weights``, ``load_textual_inversion``).
    """
    from safetensors.torch import load_file

    info = read_customization(folder)
    from diffusers.utils import logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "no LoRA keys for the text encoder": expected
    try:
        pipeline.load_lora_weights(folder, weight_name=LORA_FILE, adapter_name="scene")
        embeddings = load_file(folder / TOKENS_FILE)
        tokens = list(info["tokens"])
        if tokens:
            pipeline.load_textual_inversion([embeddings[t] for t in tokens], token=tokens)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UserError(
            f"{folder}: cannot load the customisation ({one_line(exc)}); rerun customize"
        ) from None
    finally:
        diffusers_logging.set_verbosity(verbosity)
    return str(info["prompt"])


def move(module: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """``module.to(device, dtype)``, converting the dtype only when it differs."""
    from diffusers.utils import logging as diffusers_logging

    module.to(device)
    if module.dtype != dtype:
        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # "modules to keep in float32: []": none here
        try:
            module.to(dtype=dtype)
        finally:
            diffusers_logging.set_verbosity(verbosity)
    return module


def load_pipeline(
    settings: DiffusionSettings, customization_dir: Path | None = None
) -> tuple[StableDiffusionInpaintPipeline, str]:
    """The inpainting pipeline on its device, and the prompt to use with it.

    Without ``customization_dir``: the base model and ``settings.generic_prompt``. With it: the
    base model (checked to be the one the customisation was trained on), the customisation's
    LoRA fused into the UNet, its tokens added to the tokenizer, and its scene prompt.
    """
    device = resolve_device(settings)
    if customization_dir is None:
        pipeline, prompt = load_base_pipeline(settings), settings.generic_prompt
    else:
        customization_dir = Path(customization_dir)
        info = read_customization(customization_dir)
        check_customization_base(customization_dir, info, settings)
        pipeline = load_base_pipeline(settings)
        prompt = apply_customization(pipeline, customization_dir)
        pipeline.fuse_lora(components=["unet"], lora_scale=1.0)
        pipeline.unload_lora_weights()
    place(pipeline, settings, device)
    log.info(
        "diffusion model %s%s on %s (%s), prompt %r",
        settings.model,
        f" + {customization_dir}" if customization_dir else "",
        device,
        str(pipeline.unet.dtype).removeprefix("torch."),
        prompt,
    )
    return pipeline, prompt
