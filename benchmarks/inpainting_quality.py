"""2D inpainting quality of the diffusion models on the default synthetic scene (a script).

Side by side in one run, every training view of the shipped default scene (``config.yaml``:
160x120, 24 views, masks dilated by 5 px) is inpainted inside its mask, as the inpaint stage
does it, by

- the customised model: the pretrained tiny base + the scene's LoRA and tokens (the shipped
  ``customizations.scene`` settings; one customisation per ``--seeds`` entry);
- the pretrained tiny base alone, with the generic prompt (the ``no_customize`` row's model);
- the same architecture with its random initial weights;
- OpenCV's Telea inpainting and a flat mean-colour fill;

and scored against the true background by masked PSNR (dB), which rewards a blurred mean, and by
the weight-free perceptual metrics of the evaluate stage inside the mask (HaarPSI ↑, GMSD ↓:
the mask's crop with every pixel outside the mask taken from the truth,
:mod:`maldnerf.evaluate.perceptual`), which reward plausible structure. With ``--held-out-every N``, each
seed also customises on the views except every Nth and scores customised vs base on those
held-out views only (the customisation never saw them). With ``--mask-object``, each seed also
customises with ``mask_object: true`` (the object greyed out of the training conditioning too)
and both customisations are compared by masked PSNR and by how often the object's colours
reappear in the fill (:func:`object_colour_rate`). Prints the table and writes JSON::

    python benchmarks/inpainting_quality.py --work /tmp/quality --seeds 0 1 2 \\
        --held-out-every 3 --mask-object --output results/benchmarks/inpainting_quality.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("inpainting_quality")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for intermediate files")
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="customisation seeds (one run each)"
    )
    parser.add_argument(
        "--held-out-every", type=int, default=0, help="also score views held out of training"
    )
    parser.add_argument(
        "--mask-object",
        action="store_true",
        help="also customise with mask_object: true and compare the two",
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    return parser.parse_args(argv)


OBJECT_COLOUR_DISTANCE = 0.1
"""RGB distance (values in [0, 1]) within which a colour counts as one of the object's."""


def object_colour_rate(
    filled: np.ndarray, truth: np.ndarray, original: np.ndarray, obj: np.ndarray, hole: np.ndarray
) -> tuple[int, int]:
    """How many filled pixels take the object's colours where the background does not.

    ``filled``, ``truth`` (the background) and ``original`` (with the object) are ``(H, W, 3)``
    in [0, 1]; ``obj`` is the object's own mask, ``hole`` the dilated mask that was filled.
    A pixel of the hole counts when its filled colour lies within :data:`OBJECT_COLOUR_DISTANCE`
    of some object pixel's colour while its true background colour does not (so background
    that happens to share the object's colours is not counted). Returns (count, eligible
    pixels)."""
    palette = np.unique(np.round(original[obj] * 32) / 32, axis=0)  # ~1/32 quantised colours

    def near_object(colours: np.ndarray) -> np.ndarray:
        distance = np.linalg.norm(colours[:, None, :] - palette[None, :, :], axis=-1)
        return distance.min(axis=1) < OBJECT_COLOUR_DISTANCE

    eligible = ~near_object(truth[hole])
    return int((near_object(filled[hole]) & eligible).sum()), int(eligible.sum())


def prepare_scene(work: Path) -> tuple[Path, Path, Path]:
    """The default synthetic scene with its known poses and 5-px masks: (scene, transforms,
    masks)."""
    from maldnerf.masks import MaskSettings
    from maldnerf.masks import run as masks_run
    from maldnerf.poses import PosesSettings
    from maldnerf.poses import run as poses_run
    from maldnerf.prepare.stage import PrepareSettings
    from maldnerf.prepare.stage import run as prepare_run

    scene, poses, masks = work / "scene", work / "poses", work / "masks"
    if not scene.is_dir():
        prepare_run(PrepareSettings(), "synthetic", scene)
    if not poses.is_dir():
        poses_run(PosesSettings(method="known"), scene, poses)
    if not masks.is_dir():
        masks_run(MaskSettings(dilation=5), poses / "transforms.json", scene, masks)
    return scene, poses / "transforms.json", masks


def without_views(transforms: Path, names: set[str], output: Path) -> Path:
    """A copy of ``transforms`` without the frames ``names``."""
    from maldnerf.cameras import load_transforms, write_transforms

    cameras = load_transforms(transforms)
    kept = [f for f in cameras.frames if f.name not in names]
    return write_transforms(output, dataclasses.replace(cameras, frames=kept))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    from maldnerf.diffusion import customize, inpaint
    from maldnerf.diffusion.architectures import build_random_pipeline
    from maldnerf.diffusion.baselines import flat_fill, masked_psnr, telea
    from maldnerf.diffusion.models import DiffusionSettings
    from maldnerf.diffusion.pretrain import PretrainSettings
    from maldnerf.diffusion.pretrain import run as pretrain
    from maldnerf.images import read_image, read_mask
    from maldnerf.masks import load_masks
    from maldnerf.scene import load_scene
    from maldnerf.settings import from_dict

    work = args.work
    scene_dir, transforms, masks_dir = prepare_scene(work)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    began = time.perf_counter()
    pretrain(PretrainSettings(**config.get("pretrain", {})), work / "model_base", args.threads)
    pretrain_seconds = time.perf_counter() - began
    if not (work / "model_random").is_dir():
        build_random_pipeline("tiny", 0).save_pretrained(
            work / "model_random", safe_serialization=True
        )
    paint = from_dict(inpaint.InpaintSettings, config["inpaint"], "inpaint")
    custom = config["customizations"]["scene"]

    scene = load_scene(scene_dir)
    masks = load_masks(masks_dir).train
    views = [v.name for v in scene.train]
    objects = {v.name: read_mask(v.mask) for v in scene.train}
    truth = {v: read_image(scene.background / f"{v}.png") for v in views}
    images = {v.name: read_image(v.image) for v in scene.train}
    held_out = set(views[:: args.held_out_every]) if args.held_out_every else set()

    def scores(filled: dict[str, np.ndarray], names) -> float:
        return round(float(np.mean([masked_psnr(filled[n], truth[n], masks[n]) for n in names])), 2)

    def perceptual_scores(filled: dict[str, np.ndarray], names) -> dict[str, float]:
        """Mean masked HaarPSI and GMSD over ``names`` (the evaluate stage's ``*_masked``)."""
        from maldnerf.evaluate.measures import bounding_box
        from maldnerf.evaluate.perceptual import composite, score
        from maldnerf.evaluate.stage import EvaluateSettings

        min_size = EvaluateSettings().m_lpips_min_size
        values: dict[str, list[float]] = {"haarpsi_masked": [], "gmsd_masked": []}
        for n in names:
            top, bottom, left, right = bounding_box(masks[n], min_size)
            crop = (slice(top, bottom), slice(left, right))
            pair = (composite(filled[n][crop], truth[n][crop], masks[n][crop]), truth[n][crop])
            for metric in ("haarpsi", "gmsd"):
                values[f"{metric}_masked"].append(score(metric, *pair)[0])
        return {k: round(float(np.mean(v)), 4) for k, v in values.items()}

    def colour_rate(filled: dict[str, np.ndarray]) -> float:
        counts = [
            object_colour_rate(filled[n], truth[n], images[n], objects[n], masks[n]) for n in views
        ]
        return round(100.0 * sum(c for c, _ in counts) / max(sum(e for _, e in counts), 1), 2)

    def paint_with(model: Path, customization: Path | None, name: str) -> dict:
        diffusion = DiffusionSettings(model=str(model), device="cpu")
        inpaint.run(paint, diffusion, transforms, masks_dir, customization, work / name)
        return inpaint.load_inpainted(work / name)

    fills = {
        "pretrained_base": paint_with(work / "model_base", None, "paint_base"),
        "random_init": paint_with(work / "model_random", None, "paint_random"),
        "telea": {n: telea(images[n], masks[n]) for n in views},
        "flat_fill": {n: flat_fill(images[n], masks[n]) for n in views},
    }
    table: dict[str, dict] = {name: {"all_views": scores(f, views)} for name, f in fills.items()}
    perceptual = {name: perceptual_scores(f, views) for name, f in fills.items()}
    base_painted = fills["pretrained_base"]
    customised = []
    for seed in args.seeds:
        settings = from_dict(customize.CustomizeSettings, {**custom, "seed": seed}, "customize")
        diffusion = DiffusionSettings(model=str(work / "model_base"), device="cpu")
        folder = work / f"custom_{seed}"
        began = time.perf_counter()
        customize.run(settings, diffusion, transforms, masks_dir, folder, work / f"resume_{seed}")
        painted = paint_with(work / "model_base", folder, f"paint_{seed}")
        row = {
            "seed": seed,
            "customize_seconds": round(time.perf_counter() - began, 1),
            "all_views": scores(painted, views),
        }
        perceptual[f"customised_seed_{seed}"] = perceptual_scores(painted, views)
        if args.mask_object:
            row["object_colour_percent"] = colour_rate(painted)
            masked = dataclasses.replace(settings, mask_object=True)
            folder_m = work / f"custom_{seed}_mask_object"
            customize.run(
                masked, diffusion, transforms, masks_dir, folder_m, work / f"resume_m{seed}"
            )
            painted_m = paint_with(work / "model_base", folder_m, f"paint_{seed}_mask_object")
            perceptual[f"customised_seed_{seed}_mask_object"] = perceptual_scores(painted_m, views)
            row["mask_object"] = {
                "all_views": scores(painted_m, views),
                "object_colour_percent": colour_rate(painted_m),
            }
        if held_out:
            subset = without_views(
                transforms, held_out, work / f"subset_{seed}" / "transforms.json"
            )
            folder = work / f"custom_{seed}_subset"
            customize.run(settings, diffusion, subset, masks_dir, folder, work / f"resume_s{seed}")
            painted = paint_with(work / "model_base", folder, f"paint_{seed}_subset")
            row["held_out_views"] = scores(painted, held_out)
            row["base_on_held_out_views"] = scores(base_painted, held_out)
        customised.append(row)
    table["customised"] = {
        "all_views": round(float(np.mean([r["all_views"] for r in customised])), 2),
        "per_seed": customised,
    }
    if args.mask_object:
        table["customised"]["mask_object_all_views"] = round(
            float(np.mean([r["mask_object"]["all_views"] for r in customised])), 2
        )
        for name in ("pretrained_base", "telea", "flat_fill"):
            table[name]["object_colour_percent"] = colour_rate(fills[name])
    report = {
        "scene": "config.yaml default (synthetic seed 0, 160x120, 24 views, dilation 5 px)",
        "pretrain_seconds_this_run": round(pretrain_seconds, 1),
        "pretrain_manifest": json.loads((work / "model_base" / "pretrain.json").read_text()),
        "held_out_views": sorted(held_out),
        "masked_psnr_db": table,
        "masked_perceptual_all_views": perceptual,
        "object_colour_percent": "percent of the filled pixels (where the true background is not "
        f"object-coloured) within {OBJECT_COLOUR_DISTANCE} RGB of an object colour",
        "torch_threads": args.threads,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["masked_psnr_db"], indent=2))
    print(json.dumps(perceptual, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
