"""Benchmarks of the diffusion half of MALD-NeRF (a script, not a test).

Builds the full-size Stable Diffusion 2 inpainting architecture from config
with random weights (nothing is downloaded) and measures, on one device, with the package's own
code paths:

- a LoRA customisation training step (``maldnerf.diffusion.customize.Trainer.step``) at
  ``--resolution`` with ``--batch-size`` crops: seconds per step;
- a partial-DDIM re-inpainting (``Inpainter.inpaint``, strength ``--strength`` with a
  ``--ddim-steps`` schedule) of ``--views`` views: seconds per view;
- peak memory of each (CUDA: ``max_memory_allocated``; CPU: the process's peak RSS).

It prints its figures and writes them as JSON to ``--output``. The 2D inpainting quality of the
tiny models is measured by ``inpainting_quality.py``. Examples::

    python benchmarks/diffusion_benchmark.py --device cuda --dtype bfloat16 --steps 5 \\
        --output results/benchmarks/diffusion_h200.json
    python benchmarks/diffusion_benchmark.py --device cpu --steps 1 --views 1 \\
        --output results/benchmarks/diffusion_cpu.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from machine import device_name, synchronize

os.environ.setdefault("HF_HUB_OFFLINE", "1")
log = logging.getLogger("diffusion_benchmark")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="weight dtype (auto: bf16 on GPU, fp32 on CPU)",
    )
    parser.add_argument("--steps", type=int, default=3, help="timed LoRA training steps")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps first (default: 1 on GPU, 0 on CPU)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="crops per training step")
    parser.add_argument("--resolution", type=int, default=512, help="model resolution in pixels")
    parser.add_argument("--views", type=int, default=4, help="views re-inpainted in one batch")
    parser.add_argument("--strength", type=float, default=0.5, help="re-inpainting noise level t")
    parser.add_argument("--ddim-steps", type=int, default=20, help="DDIM steps of a t=1 schedule")
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="checkpoint UNet activations"
    )
    parser.add_argument("--size", default="full", choices=["full", "tiny"], help="architecture")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.views < 1:
        parser.error("--steps, --batch-size and --views must be >= 1")
    if args.resolution % 8 or args.resolution < 64:
        parser.error("--resolution must be a multiple of 8 and >= 64")
    if not 0.0 < args.strength <= 1.0:
        parser.error("--strength must be in (0, 1]")
    return args


def peak_memory_gb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def synthetic_views(count: int, size: int, seed: int = 0):
    """Views slightly larger than the model resolution, with a blob mask each."""
    from maldnerf.diffusion.views import TrainingView

    rng = np.random.default_rng(seed)
    views = []
    for i in range(count):
        image = rng.random((size + 16, size + 32, 3), dtype=np.float32)
        mask = np.zeros(image.shape[:2], bool)
        mask[size // 3 : size // 3 + size // 4, size // 3 : size // 3 + size // 5] = True
        views.append(TrainingView(f"v{i}", Path(f"v{i}.png"), image, mask))
    return views


def speed(args: argparse.Namespace) -> dict:
    import diffusers
    import torch

    from maldnerf.diffusion.architectures import build_random_pipeline
    from maldnerf.diffusion.customize import CustomizeSettings, Trainer
    from maldnerf.diffusion.inpaint import Inpainter, InpaintSettings
    from maldnerf.diffusion.models import (
        DiffusionSettings,
        place,
        resolve_device,
    )
    from maldnerf.diffusion.schedule import num_ddim_steps

    diffusion = DiffusionSettings(
        model=f"random-{args.size}-sd2-inpainting",
        resolution=args.resolution,
        device=args.device,
        dtype=args.dtype,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    device = resolve_device(diffusion)
    warmup = args.warmup if args.warmup is not None else (1 if device.type == "cuda" else 0)
    report: dict = {
        "device": str(device),
        "device_name": device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "architecture": f"Stable Diffusion 2 inpainting ({args.size}), random weights",
        "resolution": args.resolution,
    }

    began = time.perf_counter()
    pipeline = build_random_pipeline(args.size, seed=0)
    report["build_seconds"] = round(time.perf_counter() - began, 2)
    report["parameters_millions"] = {
        name: round(sum(p.numel() for p in module.parameters()) / 1e6, 2)
        for name, module in (
            ("unet", pipeline.unet),
            ("vae", pipeline.vae),
            ("text_encoder", pipeline.text_encoder),
        )
    }
    log.info(
        "built %s in %.1f s: %s",
        report["architecture"],
        report["build_seconds"],
        report["parameters_millions"],
    )

    # --- LoRA training steps (the customize stage's own step function)
    settings = CustomizeSettings(
        steps=warmup + args.steps, batch_size=args.batch_size, warmup_steps=0, num_tokens=2
    )
    views = synthetic_views(4, args.resolution)
    reset_peak(device)
    trainer = Trainer(settings, diffusion, views, pipeline)
    report["train_dtype"] = str(trainer.weight_dtype).removeprefix("torch.")
    report["lora_parameters_millions"] = round(sum(p.numel() for p in trainer.lora) / 1e6, 3)
    times = []
    for step in range(warmup + args.steps):
        synchronize(device)
        start = time.perf_counter()
        loss = trainer.step(step)
        synchronize(device)
        elapsed = time.perf_counter() - start
        log.info(
            "train step %d: %.2f s (loss %.4f)%s",
            step,
            elapsed,
            loss,
            " [warm-up]" if step < warmup else "",
        )
        if step >= warmup:
            times.append(elapsed)
    report["train"] = {
        "batch_size": args.batch_size,
        "gradient_checkpointing": args.gradient_checkpointing,
        "warmup_steps": warmup,
        "seconds_per_step": [round(t, 3) for t in times],
        "mean_seconds_per_step": round(float(np.mean(times)), 3),
        "images_per_second": round(args.batch_size / float(np.mean(times)), 3),
        "peak_memory_gb": round(peak_memory_gb(device), 2),
    }
    unet = trainer.unet
    del trainer
    unet.disable_adapters()  # re-inpaint with the base UNet, as after fusing a LoRA

    # --- partial-DDIM re-inpainting (the IDU call)
    place(pipeline, diffusion, device)
    reset_peak(device)
    inpainter = Inpainter(
        pipeline,
        "a photo of a scene",
        InpaintSettings(num_steps=args.ddim_steps, batch_size=args.views),
        device,
        resolution=args.resolution,
    )
    views = synthetic_views(args.views, args.resolution, seed=1)
    images, masks = [v.image for v in views], [v.mask for v in views]
    seeds = list(range(args.views))
    runs = []
    for index in range(warmup + 1):
        synchronize(device)
        start = time.perf_counter()
        inpainter.inpaint(images, masks, args.strength, seeds)
        synchronize(device)
        runs.append(time.perf_counter() - start)
        log.info(
            "re-inpaint of %d views: %.2f s%s",
            args.views,
            runs[-1],
            " [warm-up, also encodes the cached conditioning]" if index < warmup else "",
        )
    report["reinpaint"] = {
        "views": args.views,
        "strength": args.strength,
        "ddim_schedule_steps": args.ddim_steps,
        "ddim_steps_run": num_ddim_steps(args.strength, args.ddim_steps),
        "conditioning_latents_cached": warmup > 0,
        "dtype": str(pipeline.unet.dtype).removeprefix("torch."),
        "seconds": round(runs[-1], 3),
        "seconds_per_view": round(runs[-1] / args.views, 3),
        "peak_memory_gb": round(peak_memory_gb(device), 2),
    }
    if device.type == "cpu":
        report["peak_memory_note"] = "CPU: peak RSS of the whole process so far (training first)"
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = speed(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
