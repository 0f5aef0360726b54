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

import contextlib
import csv
import io
import logging
import math
import resource
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
from ..images import write_image
from ..settings import to_dict
from . import checkpoint
from .adversarial import (
    PatchDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    mask_patches,
    r1_penalty,
)
from .data import Patches, RayData, TrainingViews, load_training_views
from .idu import (
    Reinpainter,
    ReinpainterSource,
    idu_iterations,
    idu_strength,
    snapshot,
    update_targets,
)
from .losses import LpipsLoss, load_lpips, masked_l1
from .model import NerfModel, build_model
from .parameterization import make_parameterization, normalize_scene
from .rays import Rays
from .samplers import nerfacc_cuda_available
from .settings import IduSettings, NerfSettings

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


def resolve_precision(setting: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype of the MLPs: bf16 on GPUs that support it under ``auto``."""
    if setting == "bf16" or (
        setting == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    ):
        return torch.bfloat16
    return None


@contextlib.contextmanager
def deterministic(enabled: bool):
    """Deterministic kernels while training on the CPU (multithreaded hash-grid gradient
    accumulation otherwise differs in the last bits between runs); GPUs keep the fast ones."""
    previous = torch.are_deterministic_algorithms_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def total_norm(tensors: list[Tensor]) -> Tensor:
    """The 2-norm of all ``tensors`` together (a scalar on the first one's device).

    What ``torch.nn.utils.get_total_norm`` (torch >= 2.6 only) computes, with
    ``torch.linalg.vector_norm`` alone: the norm of the per-tensor norms (each in its tensor's
    dtype, stacked with type promotion). It is NaN/inf when an element is NaN/inf or the sum
    of squares overflows.
    """
    device = tensors[0].device
    norms = [torch.linalg.vector_norm(t).to(device) for t in tensors]
    return torch.linalg.vector_norm(torch.stack(norms))


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The random generator of one step: a function of ``(seed, step)`` only."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003 + step * 7_919 + 17) % 2**63)
    return generator


def configure_runtime(nerf: NerfSettings, device: torch.device, model: NerfModel) -> dict[str, Any]:
    """Apply precision, TF32, nerfacc-kernel and compile settings; returns what was chosen."""
    model.autocast_dtype = resolve_precision(nerf.precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = nerf.tf32
        torch.backends.cudnn.allow_tf32 = nerf.tf32
    use_kernel = False
    if nerf.nerfacc_cuda != "off" and device.type == "cuda":
        use_kernel = nerfacc_cuda_available()
    if nerf.nerfacc_cuda == "on" and not use_kernel:
        raise UserError(
            "nerf.nerfacc_cuda: on, but nerfacc's CUDA extension is not available here "
            "(needs a GPU and the CUDA toolkit to build it); use auto or off"
        )
    model.use_cuda_kernel = use_kernel
    if nerf.compile:
        model.field.compile()
        for proposal in model.proposals:
            proposal.compile()
    return {
        "device": str(device),
        "precision": str(model.autocast_dtype or torch.float32).replace("torch.", ""),
        "tf32": bool(device.type == "cuda" and nerf.tf32),
        "nerfacc_cuda": use_kernel,
        "compile": nerf.compile,
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
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(nerf.seed + 1)
            self.discriminator = PatchDiscriminator(
                nerf.patch_size, nerf.adversarial.channels, nerf.adversarial.max_channels
            ).to(device)
        self.disc_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=nerf.adversarial.lr, betas=(0.0, 0.99), fused=True
        )
        self.lpips: LpipsLoss | None = None
        if nerf.inpainted_loss == "lpips":
            self.lpips = LpipsLoss(lpips_module if lpips_module is not None else load_lpips(device))
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
            masked, real, fake = self.masked_losses(fake, patches, step)
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
            losses.update(self.discriminator_step(real, fake.detach(), step))
        self.count_nonfinite(found_inf)
        losses["total"] = total
        return {k: v.detach() for k, v in losses.items()}

    def patch_images(self, rgb: Tensor, patches: Patches) -> Tensor:
        n, _, size, _ = patches.real.shape
        return rgb.reshape(n, size, size, 3).permute(0, 3, 1, 2)

    def masked_losses(
        self, fake: Tensor, patches: Patches, step: int
    ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """L^m terms of the rendered patches; returns them and the masked real/fake patches."""
        real, fake = mask_patches(patches.real, patches.masks), mask_patches(fake, patches.masks)
        losses: dict[str, Tensor] = {}
        if self.adversarial_on(step):
            self.discriminator.requires_grad_(False)
            fake_logits, fake_features = self.discriminator(fake)
            with torch.no_grad():
                _, real_features = self.discriminator(real)
            losses["adversarial"] = generator_loss(fake_logits)
            losses["feature_matching"] = feature_matching_loss(real_features, fake_features)
        if self.nerf.inpainted_loss == "l1":
            losses["inpainted"] = masked_l1(fake, real, patches.masks)
        elif self.nerf.inpainted_loss == "lpips":
            assert self.lpips is not None
            losses["inpainted"] = self.lpips(fake, real)
        return losses, real, fake

    def discriminator_step(self, real: Tensor, fake: Tensor, step: int) -> dict[str, Tensor]:
        """Non-saturating discriminator loss, lazy R1 on the real patches."""
        adv = self.nerf.adversarial
        self.discriminator.requires_grad_(True)
        real_logits, _ = self.discriminator(real)
        fake_logits, _ = self.discriminator(fake)
        loss = discriminator_loss(real_logits, fake_logits)
        out = {"discriminator": loss, **discriminator_stats(real_logits, fake_logits)}
        if (step - adv.warmup) % adv.r1_interval == 0:
            r1 = r1_penalty(lambda x: self.discriminator(x)[0], real)
            loss = loss + 0.5 * self.nerf.loss.r1 * adv.r1_interval * r1
            out["r1"] = r1
        self.disc_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.disc_optimizer.found_inf = self.nonfinite(loss, self.discriminator.parameters())
        self.disc_optimizer.step()
        return {k: v.detach() for k, v in out.items()}

    # -- schedules and guards ----------------------------------------------------------------

    def adversarial_on(self, step: int) -> bool:
        return self.nerf.adversarial.enabled and step >= self.nerf.adversarial.warmup

    def patches_needed(self, step: int) -> bool:
        return self.adversarial_on(step) or self.nerf.inpainted_loss != "none"

    def learning_rate(self, step: int) -> float:
        """Exponential decay from ``lr`` to ``lr_final`` after a linear warm-up."""
        opt = self.nerf.optimizer
        progress = step / max(self.nerf.iterations - 1, 1)
        lr = opt.lr * (opt.lr_final / opt.lr) ** progress
        if opt.warmup > 0 and step < opt.warmup:
            lr *= 0.01 + 0.99 * step / opt.warmup
        return lr

    @staticmethod
    def nonfinite(loss: Tensor, parameters) -> Tensor:
        """1.0 (on the device) when the loss or any gradient is NaN/inf, else 0.0."""
        grads = [p.grad for p in parameters if p.grad is not None]
        finite = torch.isfinite(loss)
        if grads:
            finite = finite & torch.isfinite(total_norm(grads))
        return (~finite).float()

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
        """Re-inpaint every training view from the current NeRF (one IDU round)."""
        started = time.perf_counter()
        round_index = len(self.idu_rounds) + 1
        strength = idu_strength(step, self.nerf.iterations, self.idu.t_max, self.idu.t_min)
        before = self.data.targets.clone()
        try:  # a signal stops a round at once; the checkpoint makes a rerun redo it
            with interrupt.immediate():
                if self.reinpainter is None:
                    assert self.reinpainter_factory is not None
                    log.info("loading the inpainting model for the dataset update")
                    self.reinpainter = self.reinpainter_factory()
                update_targets(
                    self.model,
                    self.data,
                    self.reinpainter,
                    strength,
                    round_index,
                    self.nerf.seed,
                    self.idu.batch_size,
                    self.nerf.chunk_rays,
                )
        except interrupt.Interrupted:
            self.data.targets.copy_(before)
            self.save_checkpoint(resume_dir)
            raise
        sheet = snapshot(self.data.targets.cpu().numpy(), self.idu.snapshot_width)
        write_image(resume_dir / "idu" / f"round_{round_index:02d}.png", sheet)
        seconds = time.perf_counter() - started
        self.idu_rounds.append(
            {"round": round_index, "iteration": step, "strength": strength, "seconds": seconds}
        )
        log.info(
            "IDU round %d at iteration %d: strength %.3f, %.1f s",
            round_index,
            step,
            strength,
            seconds,
        )
        self.window_start += seconds  # IDU time is not training throughput

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


LOG_LOSSES = (
    "total",
    "pixel",
    "interlevel",
    "distortion",
    "decay",
    "adversarial",
    "feature_matching",
    "inpainted",
    "discriminator",
    "r1",
)


DISCRIMINATOR_STATS = ("d_real_logit", "d_fake_logit", "d_real_accuracy", "d_fake_accuracy")


def discriminator_stats(real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
    """What the discriminator makes of this step's patches (before its update), for the log:
    mean logit of the real and of the fake patches, and the fraction of logit positions it
    classifies correctly (real > 0, fake < 0). Accuracies near 0.5 and logits near 0 mean it
    cannot tell the renders from the targets; near 1 and far apart, that it can."""
    real, fake = real_logits.detach().float(), fake_logits.detach().float()
    return {
        "d_real_logit": real.mean(),
        "d_fake_logit": fake.mean(),
        "d_real_accuracy": (real > 0).float().mean(),
        "d_fake_accuracy": (fake < 0).float().mean(),
    }


def log_csv(rows: list[dict[str, Any]]) -> str:
    """The training log as CSV text (empty cells for losses not computed in a window)."""
    buffer = io.StringIO()
    fields = list(rows[0]) if rows else ["step"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        )
    return buffer.getvalue()


def peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak memory of the run: GPU allocator peaks on CUDA, peak resident set size on the CPU."""
    memory: dict[str, Any] = {
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    }
    if device.type == "cuda":
        memory["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        memory["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
        log.info("GPU memory summary:\n%s", torch.cuda.memory_summary(device, abbreviated=True))
    return memory


def input_files(
    transforms: Path, masks_dir: Path, targets_dir: Path, names: list[str]
) -> list[Path]:
    return (
        [transforms]
        + [masks_dir / "train" / f"{n}.png" for n in names]
        + [targets_dir / f"{n}.png" for n in names]
    )


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
