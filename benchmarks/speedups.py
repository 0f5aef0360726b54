"""Each speed-up of the pipeline against the way it replaces, measured side by side in one run.

Every figure times the same work done two ways in this one process — the package's way
("after") and the way it replaced or avoids ("before") — alternating the two ``--repeat`` times
and comparing the medians, so load on the machine hits both alike. Sections:

- ``hash_grid``: the hash-grid lookup ``HashEncoding.lookup`` (``index_select``, backward a
  scatter-add) against advanced indexing ``params[rows]`` (backward an accumulating
  ``index_put_``): encoding forward + backward at the default and the full-size
  (``configs/spinnerf_gpu.yaml``) field settings, and the default NeRF training step
  (``Trainer.train_step``, 24 views of 160×120, adversarial patches on).
- ``adam``: fused Adam (the trainer's) against the per-tensor ``foreach`` Adam, one step over
  the parameters of the full-size model.
- ``render_chunk``: rendering one 160×120 view (``render_rays``) in chunks of 1024 rays (the
  CPU default of ``nerf.chunk_rays`` and ``render.chunk_rays``) against 8192.
- ``png``: writing an image at the package's zlib level (1) against Pillow's default (6).
- ``diffusion``: with the ``--diffusion-size`` architecture (random weights) at
  ``--diffusion-resolution``, the package's inpainter (``Inpainter``) against:
  one view per UNet batch instead of ``inpaint.batch_size``; a second IDU round without the
  cache of the conditioning latents; diffusers' classic attention instead of PyTorch's fused
  ``scaled_dot_product_attention``; and a LoRA customisation step with gradient checkpointing
  (the package turns it on only when memory runs out) against without. Fewer DDIM steps at a
  low noise level t are not a speed-up of the package: its ``ceil(t · num_steps)`` steps are
  those of diffusers' partial DDIM (``strength=t``: ``int(t · num_steps)`` steps) when
  ``t · num_steps`` is whole, one more otherwise.

Usage (from the repository root; ``--device cuda`` runs the same on a GPU)::

    python benchmarks/speedups.py --output results/benchmarks/speedups.json
    python benchmarks/speedups.py --only diffusion --diffusion-size full --diffusion-resolution 128
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import itertools
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).parent))  # the benchmarks' shared helpers
from full_size import full_size_sections  # noqa: E402
from machine import device_name, synchronize  # noqa: E402
from maldnerf import atomic  # noqa: E402
from maldnerf.devices import resolve_device  # noqa: E402
from maldnerf.images import PNG_COMPRESS_LEVEL  # noqa: E402
from maldnerf.nerf.encodings import HashEncoding  # noqa: E402
from maldnerf.nerf.settings import FieldSettings, IduSettings, NerfSettings  # noqa: E402
from maldnerf.settings import from_dict  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="device")
    p.add_argument("--repeat", type=int, default=9, help="timed alternations of the two ways")
    p.add_argument(
        "--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS), help="sections"
    )
    p.add_argument(
        "--diffusion-size", default="tiny", choices=["tiny", "full"], help="architecture"
    )
    p.add_argument(
        "--diffusion-resolution", type=int, default=None, help="model input px (default: own)"
    )
    p.add_argument("--views", type=int, default=8, help="diffusion: views inpainted per round")
    p.add_argument("--output", type=Path, default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.views < 1:
        p.error("--repeat and --views must be >= 1")
    return args


def side_by_side(
    before: Callable[[], Any], after: Callable[[], Any], repeat: int, device: torch.device
) -> dict[str, float]:
    """Seconds of ``before`` and of ``after``, run alternately ``repeat`` times each after one
    untimed call of each (warm-up): the median and the fastest call of each, and the speed-up
    ``before / after`` of the medians (the fastest calls can disagree on a loaded machine)."""
    times: dict[str, list[float]] = {"before": [], "after": []}
    for round_index in range(repeat + 1):
        for name, fn in (("before", before), ("after", after)):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            if round_index:
                times[name].append(time.perf_counter() - start)
    result = {f"{k}_seconds": statistics.median(v) for k, v in times.items()}
    result.update({f"{k}_fastest_seconds": min(v) for k, v in times.items()})
    result["speedup"] = result["before_seconds"] / result["after_seconds"]
    result["speedup_fastest"] = result["before_fastest_seconds"] / result["after_fastest_seconds"]
    return result


def report(figures: dict[str, Any], key: str, what: str, result: dict[str, Any]) -> None:
    figures[key] = {"what": what, **result}
    print(
        f"{key:>24}: before {1000 * result['before_seconds']:9.1f} ms  after "
        f"{1000 * result['after_seconds']:9.1f} ms  {result['speedup']:5.2f}x "
        f"(fastest calls {result['speedup_fastest']:5.2f}x)  {what}",
        flush=True,
    )


@contextlib.contextmanager
def indexing_lookup() -> Iterator[None]:
    """Every ``HashEncoding`` gathers with advanced indexing (the replaced lookup) inside."""
    original = HashEncoding.lookup
    HashEncoding.lookup = lambda self, rows: self.params[rows]
    try:
        yield
    finally:
        HashEncoding.lookup = original


def with_indexing_lookup(work: Callable[[], Any]) -> Callable[[], None]:
    """``work`` run with the replaced lookup: the *before* of the hash-grid figures."""

    def run() -> None:
        with indexing_lookup():
            work()

    return run


def encoding_pass(encoding: HashEncoding, points: torch.Tensor, grad: torch.Tensor) -> None:
    encoding.params.grad = None
    encoding(points).backward(grad)


def hash_grid(args: argparse.Namespace, device: torch.device, figures: dict) -> None:
    """Under the deterministic-kernel mode the trainer uses on the CPU."""
    from maldnerf.nerf.trainer import deterministic

    with deterministic(device.type == "cpu"):
        _hash_grid(args, device, figures)


def _hash_grid(args: argparse.Namespace, device: torch.device, figures: dict) -> None:
    from nerf_benchmark import synthetic_views

    from maldnerf.nerf.trainer import Trainer

    full = full_size_sections()["nerf"]["field"]
    generator = torch.Generator().manual_seed(0)
    for name, field, points in (
        ("default", FieldSettings(), 49152),  # 768 rays x 64 samples
        ("full_size", from_dict(FieldSettings, full), 262144),
    ):
        encoding = HashEncoding(
            field.num_levels,
            field.features_per_level,
            field.log2_table_size,
            field.base_resolution,
            field.max_resolution,
        ).to(device)
        x = torch.rand(points, 3, generator=generator).to(device)
        grad = torch.randn(points, encoding.output_dim, generator=generator).to(device)
        after = functools.partial(encoding_pass, encoding, x, grad)
        with_indexing_lookup(after)()
        old = encoding.params.grad.clone()
        after()
        difference = float((encoding.params.grad - old).abs().max())
        result = side_by_side(with_indexing_lookup(after), after, args.repeat, device)
        result["max_gradient_difference"] = difference
        report(
            figures,
            f"hash_grid_{name}",
            f"encoding fwd+bwd, {field.num_levels} levels x 2^{field.log2_table_size}, "
            f"{points} points",
            result,
        )

    views = synthetic_views(24, 160, 120)
    settings = NerfSettings(device=device.type)

    def five_steps() -> Callable[[], None]:
        """Five training steps of a fresh trainer per call, from the adversarial warm-up on."""
        trainer = Trainer(settings, IduSettings(enabled=False), views, device)
        step = itertools.count(settings.adversarial.warmup)

        def run() -> None:
            for _ in range(5):
                trainer.train_step(next(step))

        return run

    result = side_by_side(with_indexing_lookup(five_steps()), five_steps(), args.repeat, device)
    for key in (
        "before_seconds",
        "after_seconds",
        "before_fastest_seconds",
        "after_fastest_seconds",
    ):
        result[key] /= 5
    rays = settings.batch_rays + settings.patches_per_step * settings.patch_size**2
    result["after_rays_per_second"] = rays / result["after_seconds"]
    result["before_rays_per_second"] = rays / result["before_seconds"]
    report(figures, "train_step_default", f"one training step, {rays} rays", result)


def adam(args: argparse.Namespace, device: torch.device, figures: dict) -> None:
    from maldnerf.nerf.model import NerfModel
    from maldnerf.nerf.parameterization import make_parameterization, normalize_scene

    settings = from_dict(NerfSettings, full_size_sections()["nerf"])
    normalization = normalize_scene(settings.parameterization, np.eye(4)[None], 2.0, 8.0)
    parameterization = make_parameterization(
        settings.parameterization, normalization, 2.0, 8.0, 800.0, 800.0, 1008, 567
    )
    model = NerfModel(settings, parameterization).to(device)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizers = {
        fused: torch.optim.Adam(model.parameters(), lr=1e-6, fused=fused, foreach=not fused)
        for fused in (False, True)
    }
    result = side_by_side(optimizers[False].step, optimizers[True].step, args.repeat, device)
    count = sum(p.numel() for p in model.parameters())
    report(
        figures, "adam_full_size", f"fused vs foreach Adam step, {count / 1e6:.1f} M params", result
    )


def render_chunk(args: argparse.Namespace, device: torch.device, figures: dict) -> None:
    from nerf_benchmark import synthetic_views

    from maldnerf.nerf.model import render_rays
    from maldnerf.nerf.trainer import Trainer

    views = synthetic_views(4, 160, 120)
    trainer = Trainer(NerfSettings(device=device.type), IduSettings(enabled=False), views, device)
    rays = trainer.data.view_rays(0, torch.arange(160 * 120, device=device))
    trainer.model.eval()

    def render(chunk: int) -> None:
        with torch.no_grad():
            render_rays(trainer.model, rays, chunk)

    result = side_by_side(lambda: render(8192), lambda: render(1024), args.repeat, device)
    report(figures, "render_chunk", "one 160x120 view, chunks of 8192 vs 1024 rays", result)


def png(args: argparse.Namespace, device: torch.device, figures: dict) -> None:
    from PIL import Image

    from maldnerf.prepare.synthetic import SyntheticScene, intrinsics_matrix, look_at

    scene = SyntheticScene(0)
    c2w = look_at(np.array([0.0, 0.15, 1.3]), np.array([0.0, -0.45, -2.6]))
    for width, height in ((1008, 567), (160, 120)):
        image, _, _ = scene.render(
            c2w,
            intrinsics_matrix(width, height, 60.0),
            width,
            height,
            include_object=True,
            supersampling=1,
        )
        pixels = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        sizes = {}

        def write(level: int, pixels=pixels, sizes=sizes) -> None:
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG", compress_level=level)
            sizes[level] = buffer.tell()

        result = side_by_side(
            lambda: write(6), lambda: write(PNG_COMPRESS_LEVEL), args.repeat, device
        )
        result["size_ratio"] = sizes[PNG_COMPRESS_LEVEL] / sizes[6]
        report(
            figures,
            f"png_{width}x{height}",
            f"PNG level 6 vs {PNG_COMPRESS_LEVEL}, files {result['size_ratio']:.2f}x the size",
            result,
        )


def diffusion(args: argparse.Namespace, device: torch.device, figures: dict) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
    from diffusion_benchmark import synthetic_views

    from maldnerf.diffusion.architectures import build_random_pipeline
    from maldnerf.diffusion.customize import CustomizeSettings, Trainer
    from maldnerf.diffusion.inpaint import Inpainter, InpaintSettings
    from maldnerf.diffusion.models import (
        DiffusionSettings,
        model_resolution,
        place,
    )

    size = args.diffusion_size
    settings = DiffusionSettings(
        model=f"random-{size}", resolution=args.diffusion_resolution, device=device.type
    )
    pipeline = build_random_pipeline(size, seed=0)
    resolution = model_resolution(settings, pipeline)
    place(pipeline, settings, device)
    inpaint = InpaintSettings()
    views = synthetic_views(args.views, resolution)
    images, masks = [v.image for v in views], [v.mask for v in views]
    seeds = list(range(args.views))
    tag = f"{size} model at {resolution} px, {args.views} views"

    def inpainter(**changes) -> Inpainter:
        return Inpainter(
            pipeline, "a photo", InpaintSettings(**{**vars(inpaint), **changes}), device, resolution
        )

    batched, single = inpainter(batch_size=args.views), inpainter(batch_size=1)
    result = side_by_side(
        lambda: single.inpaint(images, masks, 1.0, seeds),
        lambda: batched.inpaint(images, masks, 1.0, seeds),
        args.repeat,
        device,
    )
    report(
        figures, "inpaint_batch", f"t=1 inpainting, 1 vs {args.views} views/batch; {tag}", result
    )

    uncached, cached = inpainter(cache_size=0), inpainter()
    cached.inpaint(images, masks, 0.5, seeds)  # round 1 fills the cache
    result = side_by_side(
        lambda: uncached.inpaint(images, masks, 0.5, seeds),
        lambda: cached.inpaint(images, masks, 0.5, seeds),
        args.repeat,
        device,
    )
    report(figures, "latent_cache", f"IDU round at t=0.5 without vs with the cache; {tag}", result)

    def attention(processor) -> None:
        pipeline.unet.set_attn_processor(processor)
        batched.inpaint(images, masks, 1.0, seeds)

    result = side_by_side(
        lambda: attention(AttnProcessor()),
        lambda: attention(AttnProcessor2_0()),
        args.repeat,
        device,
    )
    report(figures, "attention_sdpa", f"t=1 inpainting, classic vs SDPA attention; {tag}", result)

    customize = CustomizeSettings(steps=10**6, batch_size=4, warmup_steps=0, num_tokens=0)
    trainer = Trainer(customize, settings, views, pipeline)
    steps = iter(range(10**6))

    def unet_step(checkpointing: bool) -> None:
        if checkpointing:
            trainer.unet.enable_gradient_checkpointing()
        else:
            trainer.unet.disable_gradient_checkpointing()
        trainer.step(next(steps))

    result = side_by_side(lambda: unet_step(True), lambda: unet_step(False), args.repeat, device)
    report(
        figures,
        "lora_step_checkpointing",
        f"customisation step (batch 4) with vs without gradient checkpointing; {size} model "
        f"at {resolution} px",
        result,
    )


SECTIONS = {
    "hash_grid": hash_grid,
    "adam": adam,
    "render_chunk": render_chunk,
    "png": png,
    "diffusion": diffusion,
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    device = resolve_device(args.device, "--device")
    torch.manual_seed(0)
    figures: dict[str, Any] = {}
    meta = {
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeat": args.repeat,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(
        f"{meta['device_name']} ({device}, {meta['threads']} threads): medians of {args.repeat} "
        "alternating calls"
    )
    for section in args.only:
        SECTIONS[section](args, device, figures)
        if args.output:  # after every section: a run killed later keeps these
            atomic.write_json(args.output, {**meta, "figures": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
