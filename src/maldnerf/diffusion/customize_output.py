"""The customize stage's output folder: the trained LoRA and tokens, a manifest and a README.

``results/{scene}/diffusion/{customization}/``::

    pytorch_lora_weights.safetensors   UNet LoRA, diffusers format (pipeline.load_lora_weights)
    token_embeddings.safetensors       {"<scene-0>": (dim,), ...} (pipeline.load_textual_inversion)
    customization.json                 base model, prompt, tokens, steps, losses, time, settings
    README.md                          how to load this in stock diffusers

No copy of the base model is written: the customisation loads on top of ``diffusion.model``
(a Hugging Face id, or a local folder such as the pretrained tiny base).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import atomic
from .model_folders import LORA_FILE, MANIFEST, TOKENS_FILE

if TYPE_CHECKING:
    from .customize_trainer import Trainer


def write(trainer: Trainer, folder: Path, seconds: float, steps_run: int) -> dict[str, Any]:
    """Write the customisation files of ``trainer`` into ``folder``; returns the manifest."""
    from diffusers import StableDiffusionInpaintPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    lora_state = convert_state_dict_to_diffusers(get_peft_model_state_dict(trainer.unet))
    lora_state = {k: v.detach().float().cpu().contiguous() for k, v in lora_state.items()}
    StableDiffusionInpaintPipeline.save_lora_weights(
        folder,
        unet_lora_layers=lora_state,
        weight_name=LORA_FILE,
        unet_lora_adapter_metadata=trainer.unet.peft_config["default"].to_dict(),
    )
    settings = trainer.settings
    tokens = settings.tokens
    embeddings = trainer.embedding.detach().float().cpu()
    save_file(
        {t: embeddings[i].clone().contiguous() for t, i in zip(tokens, trainer.token_ids)},
        folder / TOKENS_FILE,
    )
    losses = trainer.losses
    manifest = {
        "base_model": trainer.diffusion.model.strip(),
        "resolution": trainer.resolution,
        "prompt": settings.prompt,
        "tokens": tokens,
        "trained": "lora+tokens",
        "lora": {
            "rank": settings.lora_rank,
            "alpha": settings.lora_alpha,
            "target_modules": list(settings.target_modules),
        },
        "steps": settings.steps,
        "views": [v.name for v in trainer.views],
        "final_loss": float(np.mean(losses[-max(1, len(losses) // 20) :])),
        "loss_curve": loss_summary(losses),
        "seconds": round(seconds, 2),
        "steps_run_in_this_process": steps_run,
        "device": str(trainer.device),
        "dtype": str(trainer.weight_dtype).removeprefix("torch."),
        "settings": asdict(settings),
        "diffusion": asdict(trainer.diffusion),
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
    tokens = ", ".join(manifest["tokens"]) or "(none)"
    lora = manifest["lora"]
    side = manifest["resolution"]
    return f"""# Scene customisation ({manifest["trained"]})

LoRA (rank {lora["rank"]}, alpha {lora["alpha"]}) on the UNet modules
{", ".join(lora["target_modules"])} and learned tokens {tokens}, trained {manifest["steps"]} steps
at {side}x{side} pixels on the scene's own views with a self-supervised inpainting loss.
Base model: `{manifest["base_model"]}` (not copied here; a relative path is relative to the
workflow's working directory).

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
    lines = [
        "from diffusers import StableDiffusionInpaintPipeline",
        "from PIL import Image",
    ]
    if manifest["tokens"]:
        lines.append("from safetensors.torch import load_file")
    lines += [
        "",
        'folder = "<this folder>"',
        f"pipe = StableDiffusionInpaintPipeline.from_pretrained({manifest['base_model']!r})",
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
