"""The ``inpaint`` stage: every training view inpainted inside its mask by the (customised)
model, with the engine of :mod:`.inpainter` (which the IDU re-inpainting uses too).

Output folder ``results/{scene}/inpaint/{customization}/``::

    <view name>.png     every training view inpainted inside its dilated mask (8-bit RGB)
    inpaint.json        model, customisation, prompt, resolution, guidance, per-view window and
                        seed, time
    contact_sheet.png   per view: original | mask | inpainted

Read back with :func:`load_inpainted`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import UserError
from .inpainter import Inpainter, InpaintSettings, load_inpainter
from .models import DiffusionSettings
from .views import load_training_views

__all__ = ["Inpainter", "InpaintSettings", "load_inpainted", "load_inpainter", "run"]

log = logging.getLogger(__name__)

MANIFEST = "inpaint.json"


def triptych_sheet(
    originals: list[np.ndarray],
    masks: list[np.ndarray],
    results: list[np.ndarray],
    thumb_width: int = 160,
    columns: int = 2,
) -> np.ndarray:
    """Grid of (original | mask in red | inpainted) thumbnails, float RGB."""
    from ..images import resize_image, tile

    cells = []
    for original, mask, result in zip(originals, masks, results):
        tinted = original.copy()
        tinted[mask] = 0.4 * tinted[mask] + 0.6 * np.array([1.0, 0.0, 0.0], np.float32)
        height = max(1, round(original.shape[0] * thumb_width / original.shape[1]))
        row = [
            resize_image(a.astype(np.float32), (thumb_width, height))
            for a in (original, tinted, result)
        ]
        gap = np.ones((height, 2, 3), np.float32)
        cells.append(np.concatenate([row[0], gap, row[1], gap, row[2]], axis=1))
    return tile(cells, columns, gap=8)


def run(
    settings: InpaintSettings,
    diffusion: DiffusionSettings,
    transforms: Path,
    masks_dir: Path,
    customization_dir: Path | None,
    output: Path,
) -> None:
    """Inpaint every training view and write the inpaint folder to ``output`` (atomically)."""
    import torch

    from ..images import write_image

    inpainter = load_inpainter(diffusion, settings, customization_dir)
    views = load_training_views(Path(transforms), Path(masks_dir), inpainter.resolution)
    seeds = [settings.seed + i for i in range(len(views))]
    inpainter.show_progress = True
    began = time.perf_counter()
    results = inpainter.inpaint([v.image for v in views], [v.mask for v in views], 1.0, seeds)
    seconds = time.perf_counter() - began
    with atomic.output_dir(output) as tmp:
        for view, result in zip(views, results):
            write_image(tmp / f"{view.name}.png", result)
        write_image(
            tmp / "contact_sheet.png",
            triptych_sheet([v.image for v in views], [v.mask for v in views], results),
        )
        atomic.write_json(
            tmp / MANIFEST,
            {
                "model": diffusion.model,
                "customization": str(customization_dir) if customization_dir else None,
                "prompt": inpainter.prompt,
                "resolution": inpainter.resolution,
                "device": str(inpainter.device),
                "dtype": str(inpainter.dtype).removeprefix("torch."),
                "views": {
                    view.name: {
                        "window": inpainter.window(view.mask).as_list(),
                        "seed": seed,
                        "mask_fraction": float(view.mask.mean()),
                    }
                    for view, seed in zip(views, seeds)
                },
                "window_format": "[x0, y0, size] in image pixels; may overhang (a masked grey border)",
                "seconds": round(seconds, 3),
                "seconds_per_view": round(seconds / len(views), 4),
                "settings": asdict(inpainter.settings),  # guidance resolved for the model
                "diffusion": asdict(diffusion),
                "torch": torch.__version__,
            },
        )
    log.info(
        "inpaint: %d views in %.1f s (%.3f s/view) with prompt %r, guidance %g; wrote %s",
        len(views),
        seconds,
        seconds / len(views),
        inpainter.prompt,
        inpainter.settings.guidance_scale,
        output,
    )


def load_inpainted(folder: str | Path) -> dict[str, np.ndarray]:
    """The inpainted training views of an inpaint folder, by view name (float32 RGB)."""

    from ..images import read_image

    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{manifest}: not found; run the inpaint stage first")
    names = list(json.loads(manifest.read_text())["views"])
    missing = [n for n in names if not (folder / f"{n}.png").is_file()]
    if missing:
        raise UserError(
            f"{folder}: inpainted view {missing[0]}.png missing; rerun the inpaint stage"
        )
    return {name: read_image(folder / f"{name}.png") for name in names}
