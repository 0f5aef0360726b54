"""One IDU round of a training run: re-inpaint every view, snapshot, record it.

The round loads the inpainting model on first use, updates the targets
(:func:`.idu.update_targets`), writes the contact sheet ``idu/round_XX.png`` (round numbers
from 1) under the resume folder and appends ``{round, iteration, strength, seconds}`` to the
run's ``idu_rounds``. A signal stops a round at once: the targets of before it are restored
and checkpointed, so a rerun redoes it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .. import interrupt
from ..images import write_image
from .idu import idu_strength, snapshot, update_targets

if TYPE_CHECKING:
    from .trainer import Trainer

log = logging.getLogger(__name__)


def run_idu_round(trainer: Trainer, step: int, resume_dir: Path) -> None:
    """Re-inpaint every training view from ``trainer``'s current NeRF (one IDU round)."""
    started = time.perf_counter()
    round_index = len(trainer.idu_rounds) + 1
    strength = idu_strength(step, trainer.nerf.iterations, trainer.idu.t_max, trainer.idu.t_min)
    before = trainer.data.targets.clone()
    try:  # a signal stops a round at once; the checkpoint makes a rerun redo it
        with interrupt.immediate():
            if trainer.reinpainter is None:
                assert trainer.reinpainter_factory is not None
                log.info("loading the inpainting model for the dataset update")
                trainer.reinpainter = trainer.reinpainter_factory()
            update_targets(
                trainer.model,
                trainer.data,
                trainer.reinpainter,
                strength,
                round_index,
                trainer.nerf.seed,
                trainer.idu.batch_size,
                trainer.nerf.chunk_rays,
            )
    except interrupt.Interrupted:
        trainer.data.targets.copy_(before)
        trainer.save_checkpoint(resume_dir)
        raise
    sheet = snapshot(trainer.data.targets.cpu().numpy(), trainer.idu.snapshot_width)
    write_image(resume_dir / "idu" / f"round_{round_index:02d}.png", sheet)
    seconds = time.perf_counter() - started
    trainer.idu_rounds.append(
        {"round": round_index, "iteration": step, "strength": strength, "seconds": seconds}
    )
    log.info(
        "IDU round %d at iteration %d: strength %.3f, %.1f s", round_index, step, strength, seconds
    )
    trainer.window_start += seconds  # IDU time is not training throughput
