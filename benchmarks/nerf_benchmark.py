"""NeRF training throughput (rays/s) and peak memory on a SPIn-NeRF-sized setting.

Builds 60 random forward-facing views of 1008x567 pixels in memory (no files, no diffusion),
each with a rectangular object mask, and times the real training step of
:class:`maldnerf.nerf.trainer.Trainer` (rays outside the mask + masked adversarial patches +
discriminator step) after a warm-up. With ``--sweep`` it runs, in one process, the plain
PyTorch fp32 path and then adds TF32, bf16, nerfacc's CUDA sampling kernels and
``torch.compile`` one at a time, and prints each figure and its ratio to the first.

Examples::

    python benchmarks/nerf_benchmark.py --device cuda --iterations 50 --sweep --output results/benchmarks/nerf.json
    python benchmarks/nerf_benchmark.py --device cpu --iterations 5 --cpu-defaults --width 320 --height 180
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from full_size import full_size_sections
from machine import device_name, synchronize
from maldnerf import atomic
from maldnerf.devices import resolve_device
from maldnerf.nerf.data import TrainingViews
from maldnerf.nerf.settings import IduSettings, NerfSettings
from maldnerf.nerf.trainer import Trainer
from maldnerf.settings import from_dict

# Hash-grid table lookups to compare (``--lookups``): the gather and, by its backward, how the
# gradient reaches the table (index_select: an atomic index_add; embedding: a sort-based
# segmented sum; indexing: an accumulating index_put).
LOOKUPS = {
    "index_select": lambda params, rows: params.index_select(0, rows),
    "embedding": lambda params, rows: torch.nn.functional.embedding(rows, params),
    "indexing": lambda params, rows: params[rows],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train"
    )
    p.add_argument("--iterations", type=int, default=30, help="timed iterations per configuration")
    p.add_argument(
        "--warmup", type=int, default=5, help="untimed iterations first (compile, caches)"
    )
    p.add_argument("--views", type=int, default=60, help="training views")
    p.add_argument("--width", type=int, default=1008, help="image width in pixels")
    p.add_argument("--height", type=int, default=567, help="image height in pixels")
    p.add_argument(
        "--batch-rays",
        type=int,
        default=None,
        help="rays outside the mask per step (default: the settings')",
    )
    p.add_argument(
        "--cpu-defaults",
        action="store_true",
        help="use the small CPU default settings instead of the full-size GPU ones",
    )
    p.add_argument(
        "--nerfacc-cuda",
        default="off",
        choices=["auto", "on", "off"],
        help="nerfacc's CUDA sampling kernels",
    )
    p.add_argument(
        "--precision", default="fp32", choices=["auto", "fp32", "bf16"], help="MLP precision"
    )
    p.add_argument(
        "--tf32", action=argparse.BooleanOptionalAction, default=False, help="TF32 matrix products"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the fields")
    p.add_argument(
        "--no-adversarial", action="store_true", help="time the reconstruction rays only"
    )
    p.add_argument(
        "--sweep", action="store_true", help="fp32, +tf32, +bf16, +nerfacc CUDA, +compile in turn"
    )
    p.add_argument(
        "--sweep-nerfacc",
        default="auto",
        choices=["auto", "off"],
        help="--sweep: nerfacc's CUDA kernels in the last two configurations (off: leave out "
        "+nerfacc_cuda and compile without them, e.g. where the extension does not build)",
    )
    p.add_argument(
        "--lookups",
        nargs="+",
        default=None,
        choices=sorted(LOOKUPS),
        help="time the (single) configuration once per hash-grid lookup kernel, side by side",
    )
    p.add_argument("--output", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="also profile --iterations steps of the (single) configuration with torch.profiler "
        "and write PROFILE.txt (operators by device time) and PROFILE.json (time by category)",
    )
    args = p.parse_args(argv)
    if args.profile and args.sweep:
        p.error("--profile profiles one configuration: leave out --sweep")
    if args.iterations < 1 or args.warmup < 0:
        p.error("--iterations must be >= 1 and --warmup >= 0")
    if args.width < 64 or args.height < 64 or args.views < 2:
        p.error("need --width and --height >= 64 and --views >= 2")
    return args


def synthetic_views(count: int, width: int, height: int, seed: int = 0) -> TrainingViews:
    """Random views on a forward-facing spiral looking at a plane 4 units away."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)
    masks = np.zeros((count, height, width), bool)
    masks[:, height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = True
    c2w = np.tile(np.eye(4), (count, 1, 1))
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    c2w[:, 0, 3] = 0.3 * np.cos(angles)
    c2w[:, 1, 3] = 0.2 * np.sin(angles)
    focal = 0.8 * width
    return TrainingViews(
        names=[f"view_{i:03d}" for i in range(count)],
        images=images,
        targets=images.copy(),
        masks=masks,
        camera_to_world=c2w,
        width=width,
        height=height,
        intrinsics=(focal, focal, width / 2, height / 2),
        near=2.0,
        far=8.0,
    )


def settings_for(args: argparse.Namespace, device: torch.device, **changes) -> NerfSettings:
    base = {} if args.cpu_defaults else full_size_sections()["nerf"]
    base.update(
        device=device.type,
        nerfacc_cuda=changes.get("nerfacc_cuda", args.nerfacc_cuda),
        precision=changes.get("precision", args.precision),
        tf32=changes.get("tf32", args.tf32),
        compile=changes.get("compile", args.compile),
    )
    if args.batch_rays:
        base["batch_rays"] = args.batch_rays
    if args.no_adversarial:
        base["adversarial"] = {**base.get("adversarial", {}), "enabled": False}
    return from_dict(NerfSettings, base)


def measure(
    args: argparse.Namespace, device: torch.device, views: TrainingViews, **changes
) -> dict:
    settings = settings_for(args, device, **changes)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    trainer = Trainer(settings, IduSettings(enabled=False), views, device)
    start = settings.adversarial.warmup  # adversarial steps from the first iteration
    per_step = settings.batch_rays
    if settings.uses_patches:
        per_step += settings.patches_per_step * settings.patch_size**2
    compile_started = time.perf_counter()
    for step in range(args.warmup):
        trainer.train_step(start + step)
    synchronize(device)
    warmup_seconds = time.perf_counter() - compile_started
    began = time.perf_counter()
    for step in range(args.iterations):
        losses = trainer.train_step(start + args.warmup + step)
    synchronize(device)
    seconds = time.perf_counter() - began
    finite = bool(torch.isfinite(losses["total"]).item())
    result = {
        "config": {
            k: getattr(settings, k) for k in ("precision", "tf32", "nerfacc_cuda", "compile")
        },
        "runtime": trainer.runtime,
        "rays_per_step": per_step,
        "samples_per_ray": sum(settings.proposal.samples) + settings.proposal.num_samples,
        "step_ms": 1000 * seconds / args.iterations,
        "rays_per_second": per_step * args.iterations / seconds,
        "warmup_seconds": warmup_seconds,
        "loss_finite": finite,
    }
    if device.type == "cuda":
        result["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
    else:
        import resource

        result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    del trainer
    return result


# Where the device time of a training step goes: the first category whose keywords a kernel
# (CUDA) or operator (CPU) name contains, lower-cased. Matrix products are the MLPs (and the discriminator's
# convolutions); gathers/scatters are mostly the hash-grid lookups and their gradient.
PROFILE_CATEGORIES = {
    "scatter / accumulate (hash-grid gradient)": (
        "index_put",
        "indexing_backward",
        "reduceadd",  # index_add_ (the backward of index_select), CUDA's indexFuncLargeIndex
        "scatter",
        "index_add",
        "atomic",
    ),
    "matrix products (MLPs, discriminator)": (
        "gemm",
        "cutlass",
        "sm90",
        "conv",
        "addmm",
        "aten::mm",
        "matmul",
        "bmm",
    ),
    "gather / index (hash-grid lookup)": ("index", "gather", "embedding"),
    "sampling, cumsum, sort (ray sampling, rendering)": (
        "cumsum",
        "cumprod",
        "scan",
        "sort",
        "searchsorted",
        "nerfacc",
    ),
    "reductions": ("reduce", "sum", "norm", "mean"),
    "optimizer": ("adam", "foreach", "multi_tensor"),
    "copies, fills, concatenation": ("copy", "catarray", "aten::cat", "fill", "memcpy", "memset"),
}


def categorise(name: str) -> str:
    lowered = name.lower()
    for category, keywords in PROFILE_CATEGORIES.items():
        if any(k in lowered for k in keywords):
            return category
    return "elementwise and other"


def profile_steps(args: argparse.Namespace, device: torch.device, views: TrainingViews) -> dict:
    """Profile ``args.iterations`` training steps after the warm-up; writes PROFILE.txt (the
    top operators by device time) and PROFILE.json (device time per category, ms per step)."""
    from torch.profiler import ProfilerActivity, profile

    settings = settings_for(args, device)
    trainer = Trainer(settings, IduSettings(enabled=False), views, device)
    start = settings.adversarial.warmup
    for step in range(args.warmup):
        trainer.train_step(start + step)
    synchronize(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    began = time.perf_counter()
    with profile(activities=activities) as prof:
        for step in range(args.iterations):
            trainer.train_step(start + args.warmup + step)
        synchronize(device)
    wall_ms = 1000 * (time.perf_counter() - began) / args.iterations
    averages = prof.key_averages()
    attribute = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    if device.type == "cuda":  # the kernels only: their launching operators repeat their time
        averages = [e for e in averages if e.device_type == torch.autograd.DeviceType.CUDA]
    rows = sorted(averages, key=lambda e: getattr(e, attribute, 0.0), reverse=True)
    categories: dict[str, float] = {}
    for event in rows:
        micros = getattr(event, attribute, 0.0)
        if micros > 0:
            key = categorise(event.key)
            categories[key] = categories.get(key, 0.0) + micros / 1000 / args.iterations
    device_ms = sum(categories.values())
    text = "\n".join(
        f"{getattr(e, attribute, 0.0) / 1000 / args.iterations:10.2f} ms/step  {e.count:7d} calls  "
        f"{categorise(e.key)[:12]:12s}  {e.key[:140]}"
        for e in rows[:60]
    )
    base = Path(args.profile)
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_suffix(".txt").write_text(text + "\n")
    report = {
        "device_name": device_name(device),
        "config": {
            k: getattr(settings, k) for k in ("precision", "tf32", "nerfacc_cuda", "compile")
        },
        "steps": args.iterations,
        "wall_ms_per_step_profiled": wall_ms,
        "device_ms_per_step": device_ms,
        "device_busy_share": device_ms / wall_ms if wall_ms else None,
        "ms_per_step_by_category": dict(sorted(categories.items(), key=lambda kv: -kv[1])),
        "top_operators_ms_per_step": {
            e.key: getattr(e, attribute, 0.0) / 1000 / args.iterations for e in rows[:25]
        },
    }
    atomic.write_json(base.with_suffix(".json"), report)
    print(
        f"profiled {args.iterations} steps: {wall_ms:.1f} ms/step wall, {device_ms:.1f} ms on the device"
    )
    for name, ms in report["ms_per_step_by_category"].items():
        print(f"  {ms:8.1f} ms  {100 * ms / device_ms:5.1f}%  {name}")
    return report


def compare_lookups(args: argparse.Namespace, device: torch.device, views: TrainingViews) -> int:
    """The training step with each hash-grid lookup of ``args.lookups``, one after another."""
    from maldnerf.nerf.encodings import HashEncoding

    original = HashEncoding.lookup
    results = {}
    try:
        for name in args.lookups:
            kernel = LOOKUPS[name]
            HashEncoding.lookup = lambda self, rows, kernel=kernel: kernel(self.params, rows)
            results[name] = measure(args, device, views)
            r = results[name]
            print(f"{name:>14}: {r['rays_per_second']:>12,.0f} rays/s  {r['step_ms']:8.1f} ms/step")
    finally:
        HashEncoding.lookup = original
    first = results[args.lookups[0]]["rays_per_second"]
    for name, r in results.items():
        r["ratio_to_first"] = r["rays_per_second"] / first
        print(f"{name:>14}: {r['ratio_to_first']:.2f}x {args.lookups[0]}")
    if args.output:
        atomic.write_json(args.output, {"device_name": device_name(device), "results": results})
    return 0


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    device = resolve_device(args.device, "--device")
    views = synthetic_views(args.views, args.width, args.height)
    if args.profile:
        profile_steps(args, device, views)
        return 0
    if args.lookups:
        return compare_lookups(args, device, views)
    if args.sweep:
        kernels = args.sweep_nerfacc
        steps = [
            ("fp32", dict(precision="fp32", tf32=False, nerfacc_cuda="off", compile=False)),
            ("+tf32", dict(precision="fp32", tf32=True, nerfacc_cuda="off", compile=False)),
            ("+bf16", dict(precision="bf16", tf32=True, nerfacc_cuda="off", compile=False)),
            (
                "+nerfacc_cuda",
                dict(precision="bf16", tf32=True, nerfacc_cuda="auto", compile=False),
            ),
            ("+compile", dict(precision="bf16", tf32=True, nerfacc_cuda=kernels, compile=True)),
        ]
        if kernels == "off":
            steps = [s for s in steps if s[0] != "+nerfacc_cuda"]
        if device.type == "cpu":
            steps = [steps[0], steps[-1]]
    else:
        steps = [("run", {})]
    report = {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "views": args.views,
        "width": args.width,
        "height": args.height,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "results": {},
    }
    results = report["results"]
    for name, changes in steps:
        try:
            results[name] = measure(args, device, views, **changes)
        except Exception as exc:  # report and continue with the next configuration
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        r = results[name]
        if args.output:  # after every configuration: a run killed later keeps these
            atomic.write_json(args.output, report)
        if "error" in r:
            print(f"{name:>15}: failed: {r['error']}", flush=True)
            continue
        memory = r.get("peak_allocated_gib", r.get("peak_rss_gib"))
        print(
            f"{name:>15}: {r['rays_per_second']:>12,.0f} rays/s  {r['step_ms']:8.1f} ms/step  "
            f"{memory:6.2f} GiB peak  ({r['rays_per_step']} rays/step, warm-up {r['warmup_seconds']:.1f} s)",
            flush=True,
        )
    first = next((r for r in results.values() if "rays_per_second" in r), None)
    if first and len(results) > 1:
        for name, r in results.items():
            if "rays_per_second" in r:
                r["ratio_to_first"] = r["rays_per_second"] / first["rays_per_second"]
                print(f"{name:>15}: {r['ratio_to_first']:.2f}x the first")
    if args.output:
        atomic.write_json(args.output, report)
        print(f"wrote {args.output}")
    return 0 if first else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
