"""The NeRF oracle on the default synthetic scene: what the NeRF makes of a perfect inpainting.

The shipped default scene (``config.yaml``: 160x120, 24 training + 8 test views, masks dilated
by 5 px) goes through the package's own stages, called as the workflow calls them
(``maldnerf.config.Pipeline`` builds each stage's settings from ``config.yaml``):

- prepare (the synthetic generator), poses with ``poses: known`` (the generator's true poses, so
  COLMAP does not run: the oracle measures the NeRF, not pose estimation), masks;
- train, for each ``--variants`` entry of ``config.yaml`` (default ``full``), with the true
  background of every training view as its inpainting target and the dataset update (IDU) off,
  so no diffusion model is loaded or needed; every other NeRF setting is the variant's (for
  ``full``: no pixel loss inside the mask, only the masked adversarial loss + feature matching);
- render (the test views) and evaluate (PSNR and SSIM, inside and outside the dilated mask).

The same evaluate stage scores two fills of the test views' ground truth for reference: the mask
filled with the image's mean colour (the whole view's, so it knows the hidden pixels' mean)
and with the mean colour of the pixels outside the mask. Prints a table and writes JSON::

    python benchmarks/oracle.py --work /tmp/oracle --variants full no_adv_l1 \\
        --output results/benchmarks/oracle.json
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCENE = "synthetic"
SHOWN = ("psnr_masked", "ssim_masked", "psnr_outside", "ssim_outside", "psnr")
log = logging.getLogger("oracle")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for intermediate files")
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    parser.add_argument(
        "--config", type=Path, default=REPO / "config.yaml", help="workflow config to follow"
    )
    parser.add_argument(
        "--variants", nargs="+", default=["full"], help="variants of the config to train"
    )
    parser.add_argument("--iterations", type=int, default=None, help="override nerf.iterations")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads for torch (1: as the workflow)"
    )
    args = parser.parse_args(argv)
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be >= 1")
    return args


def oracle_config(path: Path) -> dict:
    """The workflow config with the default scene's poses known (its first scene only)."""
    config = yaml.safe_load(path.read_text())
    scene = copy.deepcopy(config["scenes"][0])
    if scene.get("source") != "synthetic":
        sys.exit(f"{path}: the first scene must be synthetic (it has the true backgrounds)")
    scene["name"], scene["poses"] = SCENE, "known"
    config["scenes"] = [scene]
    return config


def prepare(pipeline, work: Path) -> dict[str, Path]:
    """prepare, poses (known) and masks of the default scene, reused when already in ``work``."""
    from maldnerf.masks import MaskSettings
    from maldnerf.masks import run as masks_run
    from maldnerf.poses import PosesSettings
    from maldnerf.poses import run as poses_run
    from maldnerf.prepare.stage import PrepareSettings
    from maldnerf.prepare.stage import run as prepare_run
    from maldnerf.settings import from_dict

    paths = {"scene": work / "scene", "poses": work / "poses", "masks": work / "masks"}
    if not paths["scene"].is_dir():
        prepare_run(
            from_dict(PrepareSettings, pipeline.prepare_params(SCENE)), SCENE, paths["scene"]
        )
    if not paths["poses"].is_dir():
        poses_run(
            from_dict(PosesSettings, pipeline.poses_params(SCENE)), paths["scene"], paths["poses"]
        )
    paths["transforms"] = paths["poses"] / "transforms.json"
    if not paths["masks"].is_dir():
        masks_run(
            from_dict(MaskSettings, pipeline.masks_params(SCENE)),
            paths["transforms"],
            paths["scene"],
            paths["masks"],
        )
    paths["targets"] = paths["scene"] / "background"
    if not paths["targets"].is_dir():
        sys.exit(f"{paths['targets']}: the synthetic scene has no true backgrounds")
    return paths


def evaluate(paths: dict[str, Path], render_dir: Path, nerf_dir: Path | None, output: Path) -> dict:
    """The evaluate stage's PSNR and SSIM means of the renders in ``render_dir``."""
    from maldnerf.evaluate.stage import EvaluateSettings
    from maldnerf.evaluate.stage import run as evaluate_run

    evaluate_run(
        EvaluateSettings(metrics=["psnr", "ssim"], device="cpu"),
        paths["scene"],
        paths["masks"],
        render_dir,
        nerf_dir,
        output,
        transforms=paths["transforms"],
    )
    metrics = json.loads(output.read_text())
    return {key: metrics["means"][key] for key in SHOWN}


def write_fills(paths: dict[str, Path], folder: Path) -> dict[str, Path]:
    """Ground-truth test views with the mask filled by a mean colour, as render folders:
    ``image_mean`` (the whole view's mean) and ``outside_mean`` (the mean outside the mask)."""
    from maldnerf.images import read_image, write_image
    from maldnerf.masks import load_masks
    from maldnerf.scene import load_scene

    masks = load_masks(paths["masks"]).test
    folders = {kind: folder / kind for kind in ("image_mean", "outside_mean")}
    for view in load_scene(paths["scene"]).test:
        truth, mask = read_image(view.image), masks[view.name]
        colours = {"image_mean": truth.reshape(-1, 3).mean(0), "outside_mean": truth[~mask].mean(0)}
        for kind, colour in colours.items():
            filled = truth.copy()
            filled[mask] = colour
            (folders[kind] / "test").mkdir(parents=True, exist_ok=True)
            write_image(folders[kind] / "test" / f"{view.name}.png", filled)
    return folders


def oracle_run(pipeline, paths: dict[str, Path], variant: str, iterations: int | None, work: Path):
    """Train ``variant`` on the true backgrounds with IDU off, render and evaluate it."""
    from maldnerf.nerf import render, trainer
    from maldnerf.nerf.settings import IduSettings, NerfSettings, RenderSettings
    from maldnerf.settings import from_dict

    params = pipeline.train_params(SCENE, variant)
    if iterations is not None:
        params["nerf"]["iterations"] = iterations
    nerf = from_dict(NerfSettings, params["nerf"])
    idu = from_dict(IduSettings, {**params["idu"], "enabled": False})
    root = work / variant
    began = time.perf_counter()
    trainer.run(
        nerf,
        idu,
        paths["transforms"],
        paths["masks"],
        paths["targets"],
        root / "nerf",
        root / "resume",
    )
    trained = time.perf_counter()
    render.run(
        from_dict(RenderSettings, pipeline.render_params(SCENE)),
        paths["transforms"],
        root / "nerf",
        root / "render",
    )
    rendered = time.perf_counter()
    scores = evaluate(paths, root / "render", root / "nerf", root / "metrics.json")
    info = json.loads((root / "nerf" / "nerf.json").read_text())
    return {
        "variant": variant,
        "description": pipeline.config.variants[variant].description,
        "iterations": nerf.iterations,
        "inpainted_loss": nerf.inpainted_loss,
        "adversarial": nerf.adversarial.enabled,
        "idu": False,
        "train_s": round(trained - began, 1),
        "render_s": round(rendered - trained, 1),
        "rays_per_s": info.get("rays_per_second"),
        **scores,
    }


def commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def table(rows: list[dict]) -> str:
    header = ["", *SHOWN]
    lines = ["  ".join(f"{h:>14}" for h in header)]
    for row in rows:
        values = [
            "-" if row[k] is None else f"{row[k]:.4f}" if k.startswith("ssim") else f"{row[k]:.2f}"
            for k in SHOWN
        ]
        lines.append("  ".join(f"{v:>14}" for v in [row["name"], *values]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    import torch

    from maldnerf.config import Pipeline

    torch.set_num_threads(args.threads)
    config = oracle_config(args.config)
    pipeline = Pipeline(config)
    unknown = [v for v in args.variants if v not in pipeline.config.variants]
    if unknown:
        sys.exit(f"--variants: {', '.join(unknown)} not in {args.config}")
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    paths = prepare(pipeline, args.work)
    fills = write_fills(paths, args.work / "fills")
    rows = [
        {"name": f"fill: {kind}", **evaluate(paths, folder, None, args.work / f"{kind}.json")}
        for kind, folder in fills.items()
    ]
    for row in rows:  # a fill is the ground truth outside the mask: its PSNR there is the floor's
        row["psnr_outside"] = None
    runs = []
    for variant in args.variants:
        log.info("oracle: training %s", variant)
        result = oracle_run(pipeline, paths, variant, args.iterations, args.work)
        runs.append(result)
        rows.append({"name": f"oracle: {variant}", **result})
    report = {
        "meta": {
            "date": time.strftime("%Y-%m-%d"),
            "commit": commit(),
            "machine": f"{platform.machine()} {platform.processor()}".strip(),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "config": str(args.config),
            "scene": pipeline.prepare_params(SCENE),
            "poses": "known",
            "masks": pipeline.masks_params(SCENE),
            "seconds": round(time.perf_counter() - started, 1),
        },
        "fills": {row["name"].split(": ")[1]: row for row in rows[: len(fills)]},
        "oracle": {run["variant"]: run for run in runs},
        "per_view_metrics": str(args.work),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))
    for run in runs:
        print(
            f"{run['variant']}: inside the mask {run['inpainted_loss']} pixel loss, adversarial "
            f"{'on' if run['adversarial'] else 'off'}; {run['iterations']} iterations, "
            f"train {run['train_s']} s, render {run['render_s']} s"
        )
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
