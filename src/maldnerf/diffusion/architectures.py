"""The Stable Diffusion inpainting architecture, at full size and as the ``tiny`` miniature.

:func:`build_random_pipeline` builds either from config with random weights (deterministic in
its seed), nothing downloaded: ``full`` is the Stable Diffusion 2 inpainting architecture
(865 M-parameter UNet, for benchmarks); ``tiny`` the same family at small widths (~3 M-parameter
UNet, ~1 M-parameter VAE with Stable Diffusion's 8× latent downscale, 2-layer CLIP text encoder)
— the starting point of the ``pretrain`` stage. The tiny CLIP tokenizer's vocabulary (the
256-entry byte table and a few merges) is generated here.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from diffusers import StableDiffusionInpaintPipeline

# Stable Diffusion's noise schedule, used with DDIM (epsilon prediction).
SD_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

TINY_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 9,
    "out_channels": 4,
    "block_out_channels": (64, 128),
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 16,
}
TINY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (16, 32, 64, 64),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 1.0,
}
TINY_TEXT: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 32,
}

# The Stable Diffusion 2 inpainting architecture (stabilityai/stable-diffusion-2-inpainting).
FULL_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 9,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 1024,
    "attention_head_dim": (5, 10, 20, 20),
    "use_linear_projection": True,
    "norm_num_groups": 32,
}
FULL_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
FULL_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 512,
}

# A few merges so that common prompt words are single tokens; everything else falls back to
# the byte-level alphabet, which covers any text.
_TINY_WORDS = ("a", "photo", "of", "the", "scene", "background", "empty", "room", "with", "and")


def _byte_alphabet() -> list[str]:
    """The byte-level BPE alphabet: one printable character for each of the 256 byte values."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table: dict[int, str] = {}
    shifted = 0
    for value in range(256):
        if value in printable:
            table[value] = chr(value)
        else:
            table[value] = chr(256 + shifted)
            shifted += 1
    return [table[value] for value in range(256)]


def write_tiny_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` of the tiny CLIP tokenizer into ``folder``."""
    alphabet = _byte_alphabet()
    vocab = alphabet + [c + "</w>" for c in alphabet]
    merges: list[str] = []
    for word in _TINY_WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merge = f"{pieces[0]} {pieces[1]}"
            if merge not in merges:
                merges.append(merge)
                vocab.append(pieces[0] + pieces[1])
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
    vocab = list(dict.fromkeys(vocab)) + ["<|startoftext|>", "<|endoftext|>"]
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab_file, merges_file


def tiny_tokenizer() -> Any:
    """A CLIP tokenizer over the generated byte-level vocabulary (``model_max_length = 77``)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = write_tiny_tokenizer_files(Path(tmp))
        return CLIPTokenizer(
            str(vocab_file), str(merges_file), model_max_length=77, pad_token="<|endoftext|>"
        )


def build_random_pipeline(
    size: Literal["tiny", "full"] = "tiny", seed: int = 0
) -> StableDiffusionInpaintPipeline:
    """An inpainting pipeline built from config with random weights (deterministic in ``seed``).

    ``tiny``: ~3 M-parameter UNet, ~1 M-parameter VAE, 2-layer CLIP text encoder.
    ``full``: the Stable Diffusion 2 inpainting architecture (865 M-parameter UNet), for
    benchmarks; its tokenizer is the generated tiny one (ids are valid for the full vocabulary).
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer()
    unet_config, vae_config, text_config = (
        (TINY_UNET, TINY_VAE, {**TINY_TEXT, "vocab_size": len(tokenizer)})
        if size == "tiny"
        else (FULL_UNET, FULL_VAE, FULL_TEXT)
    )
    text_config = {
        **text_config,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_config)
        vae = AutoencoderKL(**vae_config)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    return assemble(unet, vae, text_encoder, tokenizer, DDIMScheduler(**SD_SCHEDULER))


def assemble(unet, vae, text_encoder, tokenizer, scheduler) -> StableDiffusionInpaintPipeline:
    from diffusers import StableDiffusionInpaintPipeline

    pipeline = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
