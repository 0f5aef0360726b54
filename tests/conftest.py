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


@pytest.fixture(scope="session")
def pretrained_base(tmp_path_factory) -> Path:
    """The tiny base of the default pretraining (``diffusion.model: tiny``): trained once per
    machine (a few minutes on 2 cores) and kept in the machine's cache, which the workflow's
    pretrain rule reuses too (``$MALDNERF_CACHE``, else ``~/.cache/maldnerf``)."""
    from maldnerf.diffusion.pretrain import PretrainSettings, run

    folder = tmp_path_factory.mktemp("pretrained") / "tiny"
    run(PretrainSettings(), folder, workers=os.cpu_count() or 1)
    return folder


@pytest.fixture(scope="session")
def tiny_pipeline():
    """The untrained tiny pipeline (float32, CPU). Tests must not modify it."""
    from maldnerf.diffusion.architectures import build_random_pipeline

    return build_random_pipeline("tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, tiny_pipeline) -> Path:
    """The untrained tiny model saved as a local diffusers folder: a base model that loads and
    customises exactly like a downloaded one, in seconds (quality tests use the pretrained base
    of ``pretrained_base`` instead)."""
    folder = tmp_path_factory.mktemp("tiny_folder") / "model"
    tiny_pipeline.save_pretrained(folder, safe_serialization=True)
    return folder
