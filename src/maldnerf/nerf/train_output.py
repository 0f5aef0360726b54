"""The ``train`` stage's output folder (format in :mod:`.trainer`) and its input files.

``nerf.json`` holds: ``format`` (1), ``settings`` and ``idu`` (as config data),
``normalization`` and ``parameterization`` (to rebuild the model), ``cameras`` (size in
pixels, intrinsics, depth bounds in world units), ``train_views``, ``runtime`` (device,
precision, ...), ``timings`` (seconds: the whole stage, summed over resumed runs;
nerf_seconds, idu_seconds, iterations, rays, rays_per_second), ``idu_rounds``,
``peak_memory`` (bytes), ``final_losses`` (the last log row's) and ``skipped_steps``.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import atomic
from ..settings import to_dict
from .runtime import peak_memory
from .train_log import LOG_LOSSES, log_csv

if TYPE_CHECKING:
    from .trainer import Trainer

log = logging.getLogger(__name__)


def input_files(
    transforms: Path, masks_dir: Path, targets_dir: Path, names: list[str]
) -> list[Path]:
    """The files a run reads (part of its resume fingerprint)."""
    return (
        [transforms]
        + [masks_dir / "train" / f"{n}.png" for n in names]
        + [targets_dir / f"{n}.png" for n in names]
    )


def nerf_info(trainer: Trainer) -> dict[str, Any]:
    """The contents of ``nerf.json``."""
    views = trainer.views
    fx, fy, cx, cy = views.intrinsics
    last = trainer.log_rows[-1] if trainer.log_rows else {}
    return {
        "format": 1,
        "settings": to_dict(trainer.nerf),
        "idu": to_dict(trainer.idu),
        "normalization": trainer.normalization.to_dict(),
        "parameterization": trainer.parameterization.to_dict(),
        "cameras": {
            "width": views.width,
            "height": views.height,
            "fx": fx,
            "fy": fy,
            "cx": cx,
            "cy": cy,
            "near": views.near,
            "far": views.far,
        },
        "train_views": views.names,
        "runtime": trainer.runtime,
        "timings": {
            "seconds": trainer.stage_seconds(),
            "nerf_seconds": trainer.train_seconds,
            "iterations": trainer.step,
            "rays": trainer.rays_trained,
            "rays_per_second": trainer.rays_trained / max(trainer.train_seconds, 1e-9),
            "idu_seconds": sum(r["seconds"] for r in trainer.idu_rounds),
        },
        "idu_rounds": trainer.idu_rounds,
        "peak_memory": peak_memory(trainer.device),
        "final_losses": {k: last[k] for k in LOG_LOSSES if not math.isnan(last.get(k, math.nan))},
        "skipped_steps": trainer.skipped_total,
    }


def write_output(trainer: Trainer, output: Path, resume_dir: Path) -> None:
    """Write the stage's output folder atomically."""
    from safetensors.torch import save_file

    info = nerf_info(trainer)
    with atomic.output_dir(output) as tmp:
        weights = {k: v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        atomic.write_json(tmp / "nerf.json", info)
        atomic.write_text(tmp / "train_log.csv", log_csv(trainer.log_rows))
        if (resume_dir / "idu").is_dir():
            shutil.copytree(resume_dir / "idu", tmp / "idu")
    timings = info["timings"]
    log.info(
        "trained in %.1f s: NeRF %.1f s (%.0f rays/s), %d IDU rounds %.1f s; wrote %s",
        timings["seconds"],
        timings["nerf_seconds"],
        timings["rays_per_second"],
        len(trainer.idu_rounds),
        timings["idu_seconds"],
        output,
    )
