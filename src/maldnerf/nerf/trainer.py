"""The ``train`` stage: fit the NeRF with masked adversarial training and dataset updates.

Inputs: the poses stage's ``transforms.json`` (training frames: ``split == "train"``), the
masks folder (dilated training masks) and the initial inpainted training views
``<targets_dir>/<name>.png``. Output folder ``results/{scene}/nerf/{variant}/`` (atomic)::

    model.safetensors   field and proposal-network weights (what render loads)
    nerf.json           settings, scene normalisation and parameterisation, camera size and
                        depth bounds, training views, timings (``seconds``: the whole
                        stage's wall time, summed over resumed runs; ``nerf_seconds``: the
                        NeRF steps; ``idu_seconds``: the IDU rounds; rays/s, iterations),
                        IDU rounds (iteration, strength t, seconds), peak memory,
                        final losses, skipped non-finite steps
    train_log.csv       every log_every iterations: step, losses, the discriminator's mean
                        real/fake logits and accuracies (adversarial loss on), learning
                        rates, IDU strength in force, rays/s, skipped steps
    idu/round_XX.png    contact sheet of the training targets after each IDU round

While it runs, ``resume_dir`` (not a declared output, so Snakemake keeps it when the job
fails) holds ``checkpoint.pt`` (see :mod:`.checkpoint`), the log so far and the IDU snapshots;
rerunning after a kill continues from the last checkpoint.

Each iteration: ``batch_rays`` random rays outside the masks (photometric, interlevel,
distortion and decay losses) and, when a masked loss is on, ``patches_per_step`` P×P patches
overlapping the masks, rendered whole in the same forward pass (adversarial + feature
matching, or the ablations' L1/LPIPS); then one discriminator step. A step whose loss or
gradient is not finite is skipped on the device (fused Adam's ``found_inf``), without a host
sync; the count is checked at each log.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import atomic, interrupt
from ..devices import resolve_device
from ..errors import UserError
from . import checkpoint
from .data import Patches, RayData, TrainingViews, load_training_views
from .idu import Reinpainter, ReinpainterSource, idu_iterations
from .idu_round import run_idu_round
from .masked_step import MaskedTraining
from .model import build_model
from .parameterization import make_parameterization, normalize_scene
from .rays import Rays
from .runtime import (
    configure_runtime,
    deterministic,
    nonfinite,
    resolve_precision,
    step_generator,
    total_norm,
)
from .settings import IduSettings, NerfSettings
from .train_log import DISCRIMINATOR_STATS, LOG_LOSSES, discriminator_stats, log_csv
from .train_output import input_files, write_output

__all__ = [  # also what other modules, tests and benchmarks import from here
    "DISCRIMINATOR_STATS",
    "LOG_LOSSES",
    "Trainer",
    "deterministic",
    "discriminator_stats",
    "input_files",
    "load_training_views",
    "resolve_precision",
    "run",
    "step_generator",
    "total_norm",
    "write_output",
]

log = logging.getLogger(__name__)

LOSS_WEIGHT = {  # loss name -> attribute of LossWeights
    "pixel": "pixel",
    "interlevel": "interlevel",
    "distortion": "distortion",
    "decay": "decay",
    "adversarial": "adversarial",
    "feature_matching": "feature_matching",
    "inpainted": "inpainted",
}


class Trainer:
    """Holds the model, discriminator, optimisers and data of one training run."""

    def __init__(
        self,
        nerf: NerfSettings,
        idu: IduSettings,
        views: TrainingViews,
        device: torch.device,
        reinpainter_factory: Callable[[], Reinpainter] | None = None,
        lpips_module: torch.nn.Module | None = None,
    ) -> None:
        self.nerf, self.idu, self.views, self.device = nerf, idu, views, device
        near, far = views.near * nerf.near_factor, views.far * nerf.far_factor
        self.normalization = normalize_scene(
            nerf.parameterization, views.camera_to_world, views.near, views.far
        )
        fx, fy, _, _ = views.intrinsics
        self.parameterization = make_parameterization(
            nerf.parameterization, self.normalization, near, far, fx, fy, views.width, views.height
        )
        self.model = build_model(nerf, self.parameterization).to(device)
        self.runtime = configure_runtime(nerf, device, self.model)
        self.data = RayData(
            views, self.normalization.camera_to_model(views.camera_to_world), device
        )
        if nerf.uses_patches:
            self.data.sample_patches(1, nerf.patch_size, step_generator(nerf.seed, -1, device))
        opt = nerf.optimizer
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=opt.lr,
            betas=(opt.beta1, opt.beta2),
            eps=opt.eps,
            fused=True,
        )
        self.masked = MaskedTraining(nerf, device, lpips_module)
        self.discriminator = self.masked.discriminator  # what the checkpoint holds
        self.disc_optimizer = self.masked.optimizer
        self.reinpainter_factory = reinpainter_factory
        self.reinpainter: Reinpainter | None = None
        self.idu_at = idu_iterations(idu, nerf.iterations)
        if self.idu_at and reinpainter_factory is None:
            raise UserError(
                "idu.enabled: the dataset update needs an inpainting model, none was given; "
                "set idu.enabled: false or pass the diffusion model"
            )
        # Run state (checkpointed).
        self.step = 0
        self.idu_rounds: list[dict[str, Any]] = []
        self.log_rows: list[dict[str, Any]] = []
        self.train_seconds = 0.0  # NeRF steps only
        self.earlier_seconds = 0.0  # wall time of earlier runs, up to their last checkpoint
        self.stage_started = time.perf_counter()
        self.rays_trained = 0
        self.fingerprint = ""
        # Logging window and device-side counters (read only when logging).
        self.window: dict[str, Tensor] = {}
        self.window_counts: dict[str, int] = {}
        self.window_steps = 0
        self.window_rays = 0
        self.window_start = time.perf_counter()
        self.skipped = torch.zeros((), device=device)
        self.skipped_total = 0
        self.consecutive = torch.zeros((), device=device)
        self.max_consecutive = torch.zeros((), device=device)

    # -- one iteration ------------------------------------------------------------------------

    def train_step(self, step: int) -> dict[str, Tensor]:
        """One optimisation step of the NeRF (and of the discriminator when it is on)."""
        nerf, generator = self.nerf, step_generator(self.nerf.seed, step, self.device)
        rays, rgb = self.data.sample_rays(nerf.batch_rays, generator)
        patches = None
        if self.patches_needed(step):
            patches = self.data.sample_patches(nerf.patches_per_step, nerf.patch_size, generator)
            rays = Rays.cat([rays, patches.rays])
        outputs = self.model(rays, stratified=nerf.proposal.stratified, generator=generator)
        losses = self.model.reconstruction_losses(outputs, rgb)
        if patches is not None:
            fake = self.patch_images(outputs["rgb"][len(rgb) :], patches)
            masked, real, fake = self.masked.losses(fake, patches, step)
            losses.update(masked)
        total = sum(getattr(nerf.loss, LOSS_WEIGHT[k]) * v for k, v in losses.items())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        found_inf = self.nonfinite(total, self.model.parameters())
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        self.optimizer.found_inf = found_inf
        self.optimizer.step()
        if patches is not None and self.adversarial_on(step):
            losses.update(self.masked.discriminator_step(real, fake.detach(), step))
        self.count_nonfinite(found_inf)
        losses["total"] = total
        return {k: v.detach() for k, v in losses.items()}

    def patch_images(self, rgb: Tensor, patches: Patches) -> Tensor:
        n, _, size, _ = patches.real.shape
        return rgb.reshape(n, size, size, 3).permute(0, 3, 1, 2)

    # -- schedules and guards ----------------------------------------------------------------

    def adversarial_on(self, step: int) -> bool:
        return self.masked.adversarial_on(step)

    def patches_needed(self, step: int) -> bool:
        return self.masked.patches_needed(step)

    def learning_rate(self, step: int) -> float:
        """Exponential decay from ``lr`` to ``lr_final`` after a linear warm-up."""
        opt = self.nerf.optimizer
        progress = step / max(self.nerf.iterations - 1, 1)
        lr = opt.lr * (opt.lr_final / opt.lr) ** progress
        if opt.warmup > 0 and step < opt.warmup:
            lr *= 0.01 + 0.99 * step / opt.warmup
        return lr

    nonfinite = staticmethod(nonfinite)

    def count_nonfinite(self, found_inf: Tensor) -> None:
        self.skipped += found_inf
        self.consecutive = (self.consecutive + 1.0) * found_inf
        self.max_consecutive = torch.maximum(self.max_consecutive, self.consecutive)

    def current_strength(self) -> float | None:
        return self.idu_rounds[-1]["strength"] if self.idu_rounds else None

    # -- the loop ------------------------------------------------------------------------------

    def fit(self, resume_dir: Path) -> None:
        """Train from ``self.step`` to the last iteration, with IDU, logs and checkpoints."""
        from tqdm import tqdm

        nerf = self.nerf
        bar = tqdm(total=nerf.iterations, initial=self.step, desc="train", unit="it", disable=None)
        try:  # a failed step closes the progress bar before the error is printed
            with deterministic(self.device.type == "cpu"), interrupt.deferred():
                self._loop(resume_dir, bar)
        finally:
            bar.close()

    def _loop(self, resume_dir: Path, bar) -> None:
        nerf = self.nerf
        self.window_start = time.perf_counter()
        self.window_rays = 0
        done_rounds = {r["iteration"] for r in self.idu_rounds}
        while self.step < nerf.iterations:
            step = self.step
            if step in self.idu_at and step not in done_rounds:
                self.run_idu_round(step, resume_dir)
                done_rounds.add(step)
                self.save_checkpoint(resume_dir)
            losses = self.train_step(step)
            self.accumulate(losses)
            self.step = step + 1
            bar.update(1)
            if self.step % nerf.log_every == 0 or self.step == nerf.iterations:
                row = self.log(resume_dir)
                bar.set_postfix(loss=f"{row['total']:.4f}", rays_s=f"{row['rays_per_second']:.0f}")
            due = self.step % nerf.checkpoint_every == 0 and self.step < nerf.iterations
            if due or interrupt.requested():  # Ctrl-C, SIGTERM: stop here, resumable
                self.save_checkpoint(resume_dir)
            interrupt.check()

    def accumulate(self, losses: dict[str, Tensor]) -> None:
        for key, value in losses.items():
            self.window[key] = self.window[key] + value if key in self.window else value
            self.window_counts[key] = self.window_counts.get(key, 0) + 1
        self.window_steps += 1
        n_rays = self.nerf.batch_rays
        if self.patches_needed(self.step):
            n_rays += self.nerf.patches_per_step * self.nerf.patch_size**2
        self.window_rays += n_rays

    def log(self, resume_dir: Path) -> dict[str, Any]:
        """Average the window's losses (the loop's host sync), check the NaN guard, write a row."""
        values = {k: float(v) / self.window_counts[k] for k, v in self.window.items()}
        elapsed = time.perf_counter() - self.window_start
        skipped = int(self.skipped.item())
        if int(self.max_consecutive.item()) >= self.nerf.max_nonfinite_steps:
            raise UserError(
                f"nerf: the loss was NaN/inf for {int(self.max_consecutive.item())} consecutive "
                f"steps (before iteration {self.step}); lower nerf.optimizer.lr or check the "
                "input images and targets"
            )
        if skipped:
            log.warning(
                "skipped %d of the last %d steps: loss or gradients were NaN/inf",
                skipped,
                self.window_steps,
            )
        self.train_seconds += elapsed
        self.rays_trained += self.window_rays
        row = {
            "step": self.step,
            **{k: values.get(k, float("nan")) for k in LOG_LOSSES + DISCRIMINATOR_STATS},
            "lr": self.learning_rate(self.step - 1),
            "disc_lr": self.nerf.adversarial.lr if self.adversarial_on(self.step - 1) else 0.0,
            "idu_strength": self.current_strength() or float("nan"),
            "rays_per_second": self.window_rays / max(elapsed, 1e-9),
            "skipped_steps": skipped,
            "seconds": self.train_seconds,
        }
        self.skipped_total += skipped
        self.log_rows.append(row)
        log.info(
            "step %d/%d  loss %.4f  pixel %.5f  adv %.3f  D accuracy real %.2f fake %.2f  "
            "%.0f rays/s",
            self.step,
            self.nerf.iterations,
            row["total"],
            row["pixel"],
            row["adversarial"],
            row["d_real_accuracy"],
            row["d_fake_accuracy"],
            row["rays_per_second"],
        )
        atomic.write_text(resume_dir / "train_log.csv", log_csv(self.log_rows))
        self.window, self.window_counts, self.window_steps, self.window_rays = {}, {}, 0, 0
        self.skipped.zero_()
        self.max_consecutive.copy_(self.consecutive)
        self.window_start = time.perf_counter()
        return row

    def run_idu_round(self, step: int, resume_dir: Path) -> None:
        """Re-inpaint every training view from the current NeRF (see :mod:`.idu_round`)."""
        run_idu_round(self, step, resume_dir)

    # -- checkpoints ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "disc_optimizer": self.disc_optimizer.state_dict(),
            "targets": self.data.targets.cpu(),
            "idu_rounds": self.idu_rounds,
            "log_rows": self.log_rows,
            "train_seconds": self.train_seconds,
            "stage_seconds": self.stage_seconds(),
            "rays_trained": self.rays_trained,
            "skipped_total": self.skipped_total,
        }

    def stage_seconds(self) -> float:
        """Wall time of the train stage so far: this run's and earlier runs' (resumed)."""
        return self.earlier_seconds + time.perf_counter() - self.stage_started

    def save_checkpoint(self, resume_dir: Path) -> None:
        checkpoint.save(resume_dir, {"fingerprint": self.fingerprint, **self.state()})
        log.debug("checkpoint at iteration %d", self.step)

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        self.data.targets.copy_(state["targets"].to(self.device))
        self.step = int(state["step"])
        self.idu_rounds = list(state["idu_rounds"])
        self.log_rows = list(state["log_rows"])
        self.train_seconds = float(state["train_seconds"])
        self.earlier_seconds = float(state["stage_seconds"])
        self.rays_trained = int(state["rays_trained"])
        self.skipped_total = int(state["skipped_total"])


def run(
    nerf: NerfSettings,
    idu: IduSettings,
    transforms: Path,
    masks_dir: Path,
    targets_dir: Path,
    output: Path,
    resume_dir: Path,
    reinpainter_factory: Callable[[], Reinpainter] | None = None,
    lpips_module: torch.nn.Module | None = None,
    reinpainter_source: ReinpainterSource | None = None,
) -> None:
    """Train the NeRF of one scene and variant and write its folder ``output`` (see module doc).

    ``reinpainter_source`` names what ``reinpainter_factory`` builds its model from (settings,
    customisation folder); when the run has IDU rounds it is part of the resume fingerprint, so
    a checkpoint made with another inpainting model is not resumed. ``lpips_module`` replaces
    the pretrained LPIPS network (tests only).
    """
    started = time.perf_counter()
    transforms, masks_dir, targets_dir = Path(transforms), Path(masks_dir), Path(targets_dir)
    output, resume_dir = Path(output), Path(resume_dir)
    if nerf.inpainted_loss == "lpips" and lpips_module is None:
        from .losses import check_lpips_available

        check_lpips_available()
    device = resolve_device(nerf.device, "nerf.device")
    _, views = load_training_views(transforms, masks_dir, targets_dir)
    trainer = Trainer(nerf, idu, views, device, reinpainter_factory, lpips_module)
    trainer.stage_started = started
    trainer.fingerprint = checkpoint.fingerprint(
        nerf,
        idu,
        input_files(transforms, masks_dir, targets_dir, views.names),
        reinpainter_source if trainer.idu_at else None,
    )
    resume_dir.mkdir(parents=True, exist_ok=True)
    state = checkpoint.load(resume_dir, trainer.fingerprint)
    if state is not None:
        trainer.restore(state)
        log.info(
            "resuming from %s at iteration %d", resume_dir / checkpoint.CHECKPOINT, trainer.step
        )
    else:
        shutil.rmtree(resume_dir / "idu", ignore_errors=True)
    log.info(
        "training %d views of %dx%d for %d iterations on %s (%s, nerfacc CUDA %s)",
        len(views.names),
        views.width,
        views.height,
        nerf.iterations,
        device,
        trainer.runtime["precision"],
        "on" if trainer.runtime["nerfacc_cuda"] else "off",
    )
    trainer.fit(resume_dir)
    write_output(trainer, output, resume_dir)
    if not nerf.keep_checkpoint:
        checkpoint.remove(resume_dir)
