"""Fixtures of the reliability tests: one tiny prepared scene shared by every stage's checks."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> dict[str, Path]:
    """A synthetic 64x48 scene (4 training, 2 test views) through prepare, poses (its known
    poses) and masks, in the stages' own formats."""
    from maldnerf.masks import MaskSettings
    from maldnerf.masks import run as run_masks
    from maldnerf.poses import PosesSettings
    from maldnerf.poses import run as run_poses
    from maldnerf.prepare.stage import PrepareSettings
    from maldnerf.prepare.stage import run as run_prepare
    from maldnerf.prepare.synthetic import SyntheticSettings

    root = tmp_path_factory.mktemp("tiny_scene")
    synthetic = SyntheticSettings(width=64, height=48, n_train=4, n_test=2, supersampling=1)
    run_prepare(PrepareSettings(synthetic=synthetic), "tiny", root / "scene")
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
