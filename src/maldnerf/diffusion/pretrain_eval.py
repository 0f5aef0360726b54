"""How good the pretrained tiny base is: object removal on views of rooms it never saw.

Every held-out view's object mask is dilated by :data:`DILATION` pixels (the default masks
stage's dilation) and inpainted as the inpaint stage does it (a window around the mask, DDIM from
pure noise, the caption as prompt) by the pretrained model and by the same architecture with its
random initial weights; OpenCV's Telea inpainting and a flat mean-colour fill are the classical
references. Scores are masked PSNRs against the view rendered without the object, in dB,
averaged over the views (``pretrain.json``: ``held_out``). ``contact_sheet.png`` shows the first
:data:`SHEET_ROWS` views.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..images import write_image
from ..masks import dilate
from .architectures import build_random_pipeline
from .baselines import flat_fill, masked_psnr, telea
from .inpainter import Inpainter, InpaintSettings

if TYPE_CHECKING:
    import torch

    from .pretrain import PretrainSettings
    from .pretrain_data import Rooms

DILATION = 5
SHEET_ROWS = 8
SHEET_WIDTH = 160


def evaluate(
    pipeline: Any, held_out: Rooms, settings: PretrainSettings, device: torch.device, sheet: Path
) -> dict[str, Any]:
    """Scores of the pretrained ``pipeline`` and the references; writes the contact sheet."""
    from ..evaluate.sheets import contact_sheet, mask_overlay, thumbnail

    keep = [i for i in range(len(held_out)) if held_out.masks[i].sum() > 0]
    images = [held_out.images[i].astype(np.float32) / 255.0 for i in keep]
    truths = [held_out.backgrounds[i].astype(np.float32) / 255.0 for i in keep]
    masks = [dilate(held_out.masks[i], DILATION) for i in keep]
    paint = InpaintSettings(num_steps=settings.evaluation_steps)
    results = {}
    for name, model in (
        ("pretrained", pipeline),
        ("random_init", build_random_pipeline("tiny", settings.seed)),
    ):
        inpainter = Inpainter(model.to(device), settings.caption, paint, device)
        results[name] = inpainter.inpaint(images, masks, 1.0, list(range(len(images))))
    results["flat_fill"] = [flat_fill(i, m) for i, m in zip(images, masks)]
    results["telea"] = [telea(i, m) for i, m in zip(images, masks)]
    scores = {
        name: [masked_psnr(r, t, m) for r, t, m in zip(filled, truths, masks)]
        for name, filled in results.items()
    }
    columns = ["input", "random init", "flat fill", "Telea", "pretrained", "truth"]
    rows = [
        [
            thumbnail(tile, SHEET_WIDTH)
            for tile in (
                mask_overlay(images[i], masks[i]),
                results["random_init"][i],
                results["flat_fill"][i],
                results["telea"][i],
                results["pretrained"][i],
                truths[i],
            )
        ]
        for i in range(min(SHEET_ROWS, len(images)))
    ]
    write_image(sheet, contact_sheet(columns, rows))
    return {
        "views": len(images),
        "dilation_px": DILATION,
        "masked_psnr_db": {name: round(float(np.mean(v)), 2) for name, v in scores.items()},
        "pretrained_beats_flat_fill_on": f"{sum(p > f for p, f in zip(scores['pretrained'], scores['flat_fill']))}/{len(images)} views",
    }
