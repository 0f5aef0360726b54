"""The regularisers inside the mask (issue #16), before and after, in one run (a script).

The small synthetic scene of the NeRF tests (80x60, 8 training views with their known poses,
masks dilated by 2 px, the true backgrounds as oracle inpainting targets, no IDU) is trained
twice from the same seed with the same settings and the masked adversarial loss on, once per
value of ``nerf.loss.regularise_patches``:

- ``false``: the interlevel and distortion losses see the rays outside the mask only (before);
- ``true``: they also see the patch rays rendered inside it (the paper's L^m; the default).

Then, without gradients, on every pixel of the training views:

- the mean interlevel and distortion loss of the rays inside the masks and of those outside,
  with the training's sample jitter (fixed seed; the interlevel loss also without it);
- PSNR (dB) and SSIM (mean of the SSIM map) inside the masks against the true backgrounds,
  and PSNR outside them against the captured images;
- depth inside the masks (world units, along the optical axis) against the ray-traced depth
  of the scene without the object: mean absolute error, median relative error and the share
  of pixels more than 10% off; the same mean error outside the masks as a check.

Prints a table and writes JSON::

    PYTHONPATH=src python benchmarks/masked_regularisers.py --iterations 300 \\
        --output results/benchmarks/masked_regularisers.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("masked_regularisers")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=300, help="training iterations")
    parser.add_argument("--seed", type=int, default=0, help="NeRF seed (both runs)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--work", type=Path, help="folder for the scene (default: a temp dir)")
    parser.add_argument("--output", type=Path, help="JSON file to write")
    return parser.parse_args(argv)


def prepare_scene(root: Path) -> dict[str, Path]:
    """The NeRF tests' scene: 80x60, 8 training and 2 test views, known poses, 2-px masks."""
    from maldnerf.masks import MaskSettings
    from maldnerf.masks import run as run_masks
    from maldnerf.prepare.stage import PrepareSettings
    from maldnerf.prepare.stage import run as run_prepare
    from maldnerf.prepare.synthetic import SyntheticSettings

    synthetic = SyntheticSettings(width=80, height=60, n_train=8, n_test=2, supersampling=1)
    run_prepare(PrepareSettings(synthetic=synthetic), "small", root / "scene")
    transforms = root / "scene" / "known_poses.json"
    run_masks(MaskSettings(dilation=2), transforms, root / "scene", root / "masks")
    return {
        "transforms": transforms,
        "masks": root / "masks",
        "targets": root / "scene" / "background",
        "synthetic_seed": synthetic.seed,
    }


def nerf_settings(iterations: int, seed: int, regularise_patches: bool):
    """CPU-sized settings: the tests' small field, 16-px patches, adversarial after 50 steps."""
    from maldnerf.nerf.settings import NerfSettings
    from maldnerf.settings import from_dict

    return from_dict(
        NerfSettings,
        {
            "iterations": iterations,
            "batch_rays": 256,
            "patch_size": 16,
            "patches_per_step": 2,
            "device": "cpu",
            "seed": seed,
            "field": {"num_levels": 8, "log2_table_size": 14, "max_resolution": 256},
            "proposal": {"samples": [32], "max_resolutions": [64], "num_samples": 16},
            "adversarial": {"warmup": 50, "channels": 16, "max_channels": 64},
            "loss": {"regularise_patches": regularise_patches},
        },
    )


def ray_losses(
    model, data, pixels: torch.Tensor, stratified: bool, chunk: int = 2048
) -> dict[str, float]:
    """Mean interlevel and distortion loss over the rays of flat pixel indices ``pixels``,
    with the training's sample jitter (``stratified``, fixed seed) or without it."""
    from maldnerf.nerf.losses import distortion_loss, interlevel_loss
    from maldnerf.nerf.rays import pixel_rays

    totals = {"interlevel": 0.0, "distortion": 0.0}
    hw = data.height * data.width
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for start in range(0, len(pixels), chunk):
            flat = pixels[start : start + chunk].long()
            view, rest = flat // hw, flat % hw
            rays = pixel_rays(
                data.camera_to_model, data.intrinsics, view, rest // data.width, rest % data.width
            )
            out = model(rays, stratified=stratified, generator=generator)
            inter = interlevel_loss(out["edges"], out["cdfs"], out["proposal_levels"])
            totals["interlevel"] += float(inter) * len(flat)
            totals["distortion"] += float(distortion_loss(out["weights"], out["edges"])) * len(flat)
    return {k: v / len(pixels) for k, v in totals.items()}


def true_depth(views, synthetic_seed: int) -> np.ndarray:
    """Ray-traced depth ``(V, H, W)`` along the optical axis of the scene without the object."""
    from maldnerf.prepare.raytrace import camera_rays
    from maldnerf.prepare.synthetic import SyntheticScene

    scene = SyntheticScene(synthetic_seed)
    fx, fy, cx, cy = views.intrinsics
    intrinsics = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    depths = []
    for c2w in views.camera_to_world:
        origins, dirs = camera_rays(c2w, intrinsics, views.width, views.height, 1)
        t, _, _ = scene.trace(origins, dirs, include_object=False)
        depths.append((t * (dirs @ -c2w[:3, 2])).reshape(views.height, views.width))
    return np.stack(depths)


def measure(trainer, views, depth_true: np.ndarray) -> dict[str, Any]:
    from maldnerf.evaluate.measures import psnr, ssim_map
    from maldnerf.nerf.render import render_view

    model, data = trainer.model, trainer.data
    model.eval()
    figures: dict[str, Any] = {}
    for name, pixels in (("inside", data.inside), ("outside", data.outside)):
        for key, value in ray_losses(model, data, pixels, True).items():
            figures[f"{key}_{name}"] = value
        unjittered = ray_losses(model, data, pixels, False)
        figures[f"interlevel_{name}_no_jitter"] = unjittered["interlevel"]
    renders, depths = [], []
    for c2w in views.camera_to_world:
        rgb, depth = render_view(
            model, trainer.normalization, c2w, views.intrinsics, views.width, views.height, 2048
        )
        renders.append(rgb)
        depths.append(depth)
    rgb, depth = np.stack(renders), np.stack(depths)
    masks = views.masks
    truth = views.targets.astype(np.float64) / 255.0
    images = views.images.astype(np.float64) / 255.0
    figures["psnr_inside"] = psnr(rgb, truth, masks)
    figures["psnr_outside"] = psnr(rgb, images, ~masks)
    ssim = np.stack([ssim_map(r, t) for r, t in zip(rgb, truth)])
    figures["ssim_inside"] = float(ssim[masks].mean())
    error = np.abs(depth - depth_true)
    relative = error / depth_true
    figures["depth_abs_error_inside"] = float(error[masks].mean())
    figures["depth_median_rel_error_inside"] = float(np.median(relative[masks]))
    figures["depth_share_off_10pct_inside"] = float((relative[masks] > 0.1).mean())
    figures["depth_abs_error_outside"] = float(error[~masks].mean())
    return figures


def train(scene: dict[str, Path], settings) -> tuple[Any, Any, float]:
    from maldnerf.nerf.data import load_training_views
    from maldnerf.nerf.settings import IduSettings
    from maldnerf.nerf.trainer import Trainer, deterministic

    _, views = load_training_views(scene["transforms"], scene["masks"], scene["targets"])
    trainer = Trainer(settings, IduSettings(enabled=False), views, torch.device("cpu"))
    started = time.perf_counter()
    with deterministic(True):
        for step in range(settings.iterations):
            trainer.train_step(step)
    return trainer, views, time.perf_counter() - started


ROWS = (
    ("interlevel_inside", "interlevel loss, rays inside the masks", "{:.3e}"),
    ("interlevel_outside", "interlevel loss, rays outside", "{:.3e}"),
    ("interlevel_ratio", "  ratio inside / outside", "{:.2f}"),
    ("interlevel_inside_no_jitter", "  the same without jitter: inside", "{:.3e}"),
    ("interlevel_outside_no_jitter", "  the same without jitter: outside", "{:.3e}"),
    ("distortion_inside", "distortion loss, rays inside the masks", "{:.4f}"),
    ("distortion_outside", "distortion loss, rays outside", "{:.4f}"),
    ("psnr_inside", "PSNR inside the masks (dB)", "{:.2f}"),
    ("ssim_inside", "SSIM inside the masks", "{:.4f}"),
    ("psnr_outside", "PSNR outside the masks (dB)", "{:.2f}"),
    ("depth_abs_error_inside", "depth mean |error| inside (world units)", "{:.4f}"),
    ("depth_median_rel_error_inside", "depth median relative error inside", "{:.4f}"),
    ("depth_share_off_10pct_inside", "share of depths >10% off inside", "{:.4f}"),
    ("depth_abs_error_outside", "depth mean |error| outside (check)", "{:.4f}"),
    ("train_seconds", "training seconds", "{:.1f}"),
)


def main(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        scene = prepare_scene(work)
        results: dict[str, Any] = {"iterations": args.iterations, "seed": args.seed}
        depth_true = None
        for label, on in (("before", False), ("after", True)):
            log.info("training with loss.regularise_patches: %s", str(on).lower())
            trainer, views, seconds = train(scene, nerf_settings(args.iterations, args.seed, on))
            if depth_true is None:
                depth_true = true_depth(views, int(scene["synthetic_seed"]))
            figures = measure(trainer, views, depth_true)
            figures["interlevel_ratio"] = figures["interlevel_inside"] / max(
                figures["interlevel_outside"], 1e-12
            )
            figures["train_seconds"] = seconds
            results[label] = figures
    print(f"{'':44s} {'before':>10s} {'after':>10s}")
    for key, text, fmt in ROWS:
        before, after = results["before"][key], results["after"][key]
        print(f"{text:44s} {fmt.format(before):>10s} {fmt.format(after):>10s}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(parse_args())
