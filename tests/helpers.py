"""Builders of small scene folders for tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def write_plain_scene(
    root: Path, n_train: int = 4, n_test: int = 2, size=(64, 48), seed: int = 0
) -> Path:
    """A plain-layout folder: images/, masks/, test/ with random textures and a centred mask."""
    rng = np.random.default_rng(seed)
    width, height = size
    for folder in ("images", "masks", "test"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : height // 2, width // 4 : width // 2] = 255
    for i in range(n_train):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            root / "images" / f"v{i:02d}.png"
        )
        Image.fromarray(mask).save(root / "masks" / f"v{i:02d}.png")
    for i in range(n_test):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            root / "test" / f"t{i:02d}.png"
        )
    return root


def write_known_transforms(root: Path) -> Path:
    """A ``transforms.json`` (camera-to-world per view, shifted along x) for the views of a
    :func:`write_plain_scene` folder, so that it can run with ``poses: known``."""
    import json

    names = sorted(p.stem for p in (root / "images").glob("*.png"))
    tests = sorted(p.stem for p in (root / "test").glob("*.png"))
    frames = []
    for index, (folder, name) in enumerate(
        [("images", n) for n in names] + [("test", n) for n in tests]
    ):
        matrix = np.eye(4)
        matrix[0, 3] = 0.2 * index
        frames.append({"file_path": f"{folder}/{name}.png", "transform_matrix": matrix.tolist()})
    path = root / "transforms.json"
    path.write_text(json.dumps({"fl_x": 60.0, "frames": frames}))
    return path


def tiny_nerf_dict(**overrides) -> dict:
    """NeRF settings (as config data) small enough to train in seconds on the CPU.

    ``overrides`` are merged in, nested dicts key by key.
    """
    from maldnerf.config import deep_merge

    base = {
        "iterations": 12,
        "batch_rays": 64,
        "patch_size": 8,
        "device": "cpu",
        "checkpoint_every": 3,
        "log_every": 4,
        "field": {
            "num_levels": 4,
            "log2_table_size": 10,
            "max_resolution": 64,
            "hidden_dim": 16,
            "color_hidden_dim": 16,
            "color_layers": 1,
            "geo_feat_dim": 7,
        },
        "proposal": {
            "samples": [16],
            "max_resolutions": [32],
            "num_samples": 8,
            "num_levels": 3,
            "log2_table_size": 10,
        },
        "adversarial": {"warmup": 2, "channels": 8, "max_channels": 16},
    }
    return deep_merge(base, overrides)


def prepared_synthetic(
    root: Path, width: int, height: int, n_train: int, n_test: int, known_poses_stage: bool
) -> dict[str, Path]:
    """A small synthetic scene through prepare and masks (and the poses stage with its known
    poses when ``known_poses_stage``), in the stages' own formats; the true backgrounds serve
    as oracle inpainting targets."""
    from maldnerf.masks import MaskSettings
    from maldnerf.masks import run as run_masks
    from maldnerf.poses import PosesSettings
    from maldnerf.poses import run as run_poses
    from maldnerf.prepare.stage import PrepareSettings
    from maldnerf.prepare.stage import run as run_prepare
    from maldnerf.prepare.synthetic import SyntheticSettings

    synthetic = SyntheticSettings(
        width=width, height=height, n_train=n_train, n_test=n_test, supersampling=1
    )
    run_prepare(PrepareSettings(synthetic=synthetic), root.name, root / "scene")
    transforms = root / "scene" / "known_poses.json"
    if known_poses_stage:
        run_poses(PosesSettings(method="known"), root / "scene", root / "poses")
        transforms = root / "poses" / "transforms.json"
    run_masks(MaskSettings(dilation=2), transforms, root / "scene", root / "masks")
    return {
        "root": root,
        "scene": root / "scene",
        "transforms": transforms,
        "masks": root / "masks",
        "targets": root / "scene" / "background",
    }


def stop_with_signal(
    command: list[str], log: Path, ready: Callable[[str], bool], signum: int
) -> tuple[int, float]:
    """Run ``command`` (its stderr to ``log``) until ``ready(log text)``, then send it
    ``signum``; returns its exit status and the seconds from the signal to its exit."""
    import subprocess
    import time

    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=handle)
    try:
        deadline = time.monotonic() + 900
        while not ready(log.read_text()):
            assert process.poll() is None, f"exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"never ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        sent = time.monotonic()
        process.send_signal(signum)
        status = process.wait(timeout=120)
        return status, time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
