"""The ``customize`` stage: adapt the inpainting model to one scene (MALD-NeRF §3.2).

One path for every base model (the pretrained tiny miniature, Stable Diffusion 2 inpainting, any
diffusers inpainting checkpoint): a LoRA on the UNet's attention projections and a few learned
prompt tokens train; the base model stays frozen (:mod:`.customize_trainer`). Training data are
the scene's own training views: random crops with random holes (:mod:`.customize_data`). The
loss is the standard noise-prediction loss of the inpainting UNet, counted only on latent cells
that touch a hole and do not touch the dilated object mask (both max-pooled to latent
resolution): pixels under the object are unknown. A rectangle lying wholly inside the object mask
therefore contributes exactly zero loss. The conditioning follows the stock inpainting pipeline
(mask + latents of the crop with the holes greyed out); the object stays visible in it unless
``mask_object`` is set.

Output: see :mod:`.customize_output`.

Resuming: every ``checkpoint_every`` steps the trained tensors, the optimizer state and the loss
history are written atomically to ``resume_dir/checkpoint.pt`` (a folder outside the output,
which Snakemake deletes on failure). A rerun with the same settings, base model and inputs
continues from there; every step draws its randomness from ``(seed, step)`` only, so an
interrupted and resumed run ends with exactly the weights of an uninterrupted one (on the same
device).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic, interrupt
from ..errors import UserError
from .customize_data import CustomizeSettings, sample_batch
from .customize_output import write
from .customize_trainer import Trainer
from .models import (
    DiffusionSettings,
    load_base_pipeline,
    model_identity,
    model_resolution,
    out_of_memory_hint,
)
from .views import TrainingView, load_training_views

log = logging.getLogger(__name__)

__all__ = ["CHECKPOINT", "CustomizeSettings", "Trainer", "run", "sample_batch"]

CHECKPOINT = "checkpoint.pt"
OOM_HINT = (
    "lower customize.batch_size or diffusion.resolution, or set "
    "diffusion.gradient_checkpointing: true"
)


# ---------------------------------------------------------------------------- stage


def fingerprint(
    settings: CustomizeSettings, diffusion: DiffusionSettings, views: list[TrainingView]
) -> str:
    """Hash of everything that determines the trained weights (not checkpoint_every)."""
    digest = hashlib.sha256()
    settings_dict = {k: v for k, v in asdict(settings).items() if k != "checkpoint_every"}
    model = {k: asdict(diffusion)[k] for k in ("model", "resolution", "dtype")}
    model["identity"] = model_identity(diffusion)
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
            smoothed = loss if smoothed is None else 0.9 * smoothed + 0.1 * loss
            bar.set_postfix(loss=f"{smoothed:.4f}", refresh=False)
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
        "customize: LoRA + %d tokens on %s, %d views at %dpx, %d steps, batch %d, on %s",
        settings.num_tokens,
        diffusion.model,
        len(views),
        resolution,
        settings.steps,
        settings.batch_size,
        trainer.device,
    )
    with interrupt.deferred():  # a signal stops training after a step (see maldnerf.interrupt)
        seconds, steps_run = train(trainer, resume_dir, key)
    with atomic.output_dir(output) as tmp:
        manifest = write(trainer, tmp, seconds, steps_run)
    log.info(
        "customize: final loss %.4f, %.1f s (%.2f steps/s); wrote %s",
        manifest["final_loss"],
        seconds,
        trainer.total_steps / max(seconds, 1e-9),
        output,
    )
