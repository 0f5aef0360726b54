"""Fixtures of the NeRF tests: a small synthetic scene with known poses, masks and targets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory) -> dict[str, Path]:
    """A 80x60 synthetic scene (8 training, 2 test views) with its known poses as the
    transforms file, dilated masks, and the true backgrounds as (oracle) inpainting targets."""
    from maldnerf.masks import MaskSettings
    from maldnerf.masks import run as run_masks
    from maldnerf.prepare.stage import PrepareSettings
    from maldnerf.prepare.stage import run as run_prepare
    from maldnerf.prepare.synthetic import SyntheticSettings

    root = tmp_path_factory.mktemp("nerf_scene")
    settings = PrepareSettings(
        synthetic=SyntheticSettings(width=80, height=60, n_train=8, n_test=2, supersampling=1)
    )
    run_prepare(settings, "small", root / "scene")
    transforms = root / "scene" / "known_poses.json"
    run_masks(MaskSettings(dilation=2), transforms, root / "scene", root / "masks")
    return {
        "root": root,
        "scene": root / "scene",
        "transforms": transforms,
        "masks": root / "masks",
        "targets": root / "scene" / "background",
    }
