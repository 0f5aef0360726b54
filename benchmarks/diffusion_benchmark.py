"""Benchmarks of the diffusion half of MALD-NeRF (a script, not a test).

``speed`` (default): builds the full-size Stable Diffusion 2 inpainting architecture from config
with random weights (nothing is downloaded) and measures, on one device, with the package's own
code paths:

- a LoRA customisation training step (``maldnerf.diffusion.customize.Trainer.unet_step``) at
  ``--resolution`` with ``--batch-size`` crops: seconds per step;
- a partial-DDIM re-inpainting (``Inpainter.inpaint``, strength ``--strength`` with a
  ``--ddim-steps`` schedule) of ``--views`` views: seconds per view;
- peak memory of each (CUDA: ``max_memory_allocated``; CPU: the process's peak RSS).

``quality``: on a prepared synthetic scene (with ``background/`` ground truth), customises the
``tiny`` model, inpaints every training view with the customised and the uncustomised tiny model
and with OpenCV's Telea inpainting, and reports the masked PSNR of each against the true
background.

Both print their figures and write them as JSON to ``--output``. Examples::

    python benchmarks/diffusion_benchmark.py --device cuda --dtype bfloat16 --steps 5 \\
        --output results/benchmarks/diffusion_h200.json
    python benchmarks/diffusion_benchmark.py --device cpu --steps 1 --views 1 \\
        --output results/benchmarks/diffusion_cpu.json
    python benchmarks/diffusion_benchmark.py quality --scene /tmp/dif/scene \\
        --transforms /tmp/dif/poses/transforms.json --masks /tmp/dif/masks --work /tmp/dif/bench \\
        --output results/benchmarks/diffusion_quality.json
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
    parser.add_argument(
        "mode", nargs="?", default="speed", choices=["speed", "quality"], help="what to measure"
    )
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
    # quality mode
    parser.add_argument("--scene", type=Path, help="quality: prepared scene folder")
    parser.add_argument("--transforms", type=Path, help="quality: transforms.json of poses")
    parser.add_argument("--masks", type=Path, help="quality: masks folder")
    parser.add_argument("--work", type=Path, help="quality: folder for the intermediate outputs")
    parser.add_argument(
        "--customize-settings", default="{}", help="quality: customize settings as JSON"
    )
    parser.add_argument(
        "--inpaint-settings", default="{}", help="quality: inpaint settings as JSON"
    )
    args = parser.parse_args(argv)
    if args.mode == "quality" and not all((args.scene, args.transforms, args.masks, args.work)):
        parser.error("quality needs --scene, --transforms, --masks and --work")
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

    from maldnerf.diffusion.customize import CustomizeSettings, Trainer
    from maldnerf.diffusion.inpaint import Inpainter, InpaintSettings
    from maldnerf.diffusion.models import (
        DiffusionSettings,
        build_random_pipeline,
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
        loss = trainer.unet_step(step)
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


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return float(10.0 * np.log10(1.0 / max(mse, 1e-12)))


def quality(args: argparse.Namespace) -> dict:
    import cv2

    from maldnerf.diffusion import customize, inpaint
    from maldnerf.diffusion.models import DiffusionSettings
    from maldnerf.images import read_image, to_uint8
    from maldnerf.scene import load_scene
    from maldnerf.settings import from_dict

    scene = load_scene(args.scene)
    if scene.background is None:
        sys.exit(f"{args.scene}: has no background/ folder (a synthetic scene is needed)")
    diffusion = DiffusionSettings(device=args.device, dtype=args.dtype)
    custom = from_dict(customize.CustomizeSettings, json.loads(args.customize_settings))
    paint = from_dict(inpaint.InpaintSettings, json.loads(args.inpaint_settings))
    work = args.work
    began = time.perf_counter()
    customize.run(custom, diffusion, args.transforms, args.masks, work / "custom", work / "resume")
    customize_seconds = time.perf_counter() - began
    report: dict = {"customize_seconds": round(customize_seconds, 1)}
    manifest = json.loads((work / "custom" / "customization.json").read_text())
    report["customize_steps_per_second"] = round(
        (manifest["steps"] + manifest["vae_steps"]) / max(manifest["seconds"], 1e-9), 2
    )
    report["settings"] = {"customize": manifest["settings"], "inpaint": paint.__dict__}
    for name, folder in (("customized", work / "custom"), ("not_customized", None)):
        began = time.perf_counter()
        inpaint.run(paint, diffusion, args.transforms, args.masks, folder, work / f"inpaint_{name}")
        report[f"{name}_inpaint_seconds"] = round(time.perf_counter() - began, 2)
    customized = inpaint.load_inpainted(work / "inpaint_customized")
    plain = inpaint.load_inpainted(work / "inpaint_not_customized")
    masks = {}
    from maldnerf.masks import load_masks

    masks = load_masks(args.masks).train
    scores: dict[str, list[float]] = {"customized": [], "not_customized": [], "telea": []}
    for view in scene.train:
        truth = read_image(scene.background / f"{view.name}.png")
        mask = masks[view.name]
        telea = (
            cv2.inpaint(
                to_uint8(read_image(view.image)), mask.astype(np.uint8), 5, cv2.INPAINT_TELEA
            ).astype(np.float32)
            / 255.0
        )
        scores["customized"].append(masked_psnr(customized[view.name], truth, mask))
        scores["not_customized"].append(masked_psnr(plain[view.name], truth, mask))
        scores["telea"].append(masked_psnr(telea, truth, mask))
    report["masked_psnr_db"] = {k: round(float(np.mean(v)), 2) for k, v in scores.items()}
    report["views"] = len(scene.train)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = speed(args) if args.mode == "speed" else quality(args)
    report["mode"] = args.mode
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
