"""Shared fixtures: a prepared synthetic scene (with poses and masks) built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def synthetic_scene(tmp_path_factory) -> Path:
    """The default synthetic scene (24 + 8 views, 160x120) prepared into a temporary folder."""
    from maldnerf.prepare.stage import PrepareSettings, run

    root = tmp_path_factory.mktemp("synthetic")
    run(PrepareSettings(), "synthetic", root / "scene")
    return root


@pytest.fixture(scope="session")
def synthetic_poses(synthetic_scene: Path) -> Path:
    """COLMAP poses of the synthetic scene (poses folder)."""
    from maldnerf.poses import PosesSettings, run

    run(PosesSettings(), synthetic_scene / "scene", synthetic_scene / "poses")
    return synthetic_scene / "poses"


@pytest.fixture(scope="session")
def synthetic_masks(synthetic_scene: Path, synthetic_poses: Path) -> Path:
    """Dilated masks of the synthetic scene (masks folder)."""
    from maldnerf.masks import MaskSettings, run

    run(
        MaskSettings(dilation=5),
        synthetic_poses / "transforms.json",
        synthetic_scene / "scene",
        synthetic_scene / "masks",
    )
    return synthetic_scene / "masks"
